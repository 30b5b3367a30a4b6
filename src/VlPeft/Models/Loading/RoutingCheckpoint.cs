using System.Text.Json.Nodes;
using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Models.Loading;

/// <summary>
/// Assembles the routing paper's pipelines from the two HF checkpoints it starts from (models.md §10): a ViT
/// (google/vit-base-patch16-224-in21k: ViTModel names, bare or under <c>vit.</c>) and RoBERTa (bare or under
/// <c>roberta.</c>) or GPT-2 (bare, as the gpt2 files are, or under <c>transformer.</c>). The config.json is made from
/// the two config.json files; the VQA classifier (and a pooler the text checkpoint lacks) starts fresh, seeded.
/// Tokenizer files come from the text directory, preprocessor_config.json from the ViT's.
/// </summary>
public static class RoutingCheckpoint
{
    public static VisionLanguageModel AssembleBase(string vitDirectory, string textDirectory, string outDirectory, IReadOnlyList<string>? answers = null, int seed = 0)
    {
        var vitConfig = ReadConfig(vitDirectory);
        var textConfig = ReadConfig(textDirectory);
        string textType = textConfig["model_type"]?.GetValue<string>() ?? "";
        if (vitConfig["model_type"]?.GetValue<string>() is string vt && vt != "vit")
            throw new BadInputException($"the vision checkpoint must be a ViT (model_type vit), got {vt}", Path.Combine(vitDirectory, "config.json"));
        var root = textType switch
        {
            "roberta" => new JsonObject { ["model_type"] = VitRobertaVqaConfig.Type },
            "gpt2" => new JsonObject { ["model_type"] = VitGpt2CaptioningConfig.Type },
            _ => throw new BadInputException($"the text checkpoint must be RoBERTa or GPT-2 (model_type roberta or gpt2), got '{textType}'", Path.Combine(textDirectory, "config.json")),
        };
        root["vision_config"] = vitConfig;
        root["text_config"] = textConfig;
        if (textType == "roberta")
            root["id2label"] = new JsonObject((answers ?? Enumerable.Range(0, 3129).Select(i => $"LABEL_{i}").ToList())
                .Select((a, i) => KeyValuePair.Create(i.ToString(), (JsonNode?)JsonValue.Create(a))));
        string configJson = root.ToJsonString();

        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        Read(vitDirectory, "vit.", new[] { "vit." }, tensors);
        if (textType == "roberta") Read(textDirectory, "roberta.", new[] { "roberta." }, tensors);
        else Read(textDirectory, "transformer.", new[] { "transformer." }, tensors);

        torch.manual_seed(seed);
        var model = ModelFamilies.ForType(root["model_type"]!.GetValue<string>()).Create(configJson, Path.Combine(outDirectory, "config.json"));
        var fresh = new List<string>();
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters())
            {
                if (tensors.TryGetValue(name, out var t))
                {
                    if (!t.shape.SequenceEqual(p.shape))
                        throw new BadInputException($"'{name}' is [{string.Join(", ", t.shape)}] in the checkpoint but the config makes it [{string.Join(", ", p.shape)}]");
                    p.copy_(t);
                }
                else if (name.StartsWith("classifier.", StringComparison.Ordinal) || name.StartsWith("roberta.pooler.", StringComparison.Ordinal)) fresh.Add(name);
                else throw new BadInputException($"the checkpoints lack '{name}' (ViT from {vitDirectory}, text model from {textDirectory})");
            }
        foreach (var t in tensors.Values) t.Dispose();
        PretrainedModel.Save(model, outDirectory);
        foreach (var (directory, names) in new[]
        {
            (textDirectory, new[] { "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt" }),
            (vitDirectory, new[] { "preprocessor_config.json" }),
        })
            foreach (var name in names.Where(n => File.Exists(Path.Combine(directory, n))))
                File.Copy(Path.Combine(directory, name), Path.Combine(outDirectory, name), overwrite: true);
        // roberta-base and gpt2 ship no tokenizer_config.json: say which byte-level BPE this is (RoBERTa wraps in <s> … </s>).
        string tokenizerConfig = Path.Combine(outDirectory, "tokenizer_config.json");
        if (!File.Exists(tokenizerConfig))
            AtomicFile.WriteAllText(tokenizerConfig, new JsonObject { ["tokenizer_class"] = textType == "roberta" ? "RobertaTokenizer" : "GPT2Tokenizer" }.ToJsonString());
        return model;
    }

    static JsonObject ReadConfig(string directory)
    {
        string path = Path.Combine(directory, "config.json");
        if (!File.Exists(path)) throw new BadInputException("config.json not found", path);
        return JsonObjects.Parse(File.ReadAllText(path), path, "config.json");
    }

    /// <summary>Every tensor under our prefix: names already carrying one of <paramref name="known"/> keep it, bare ones get it.
    /// Buffers HF stores beside the weights (GPT-2's attn.bias / masked_bias causal masks, position_ids) and heads are skipped.</summary>
    static void Read(string directory, string prefix, string[] known, Dictionary<string, Tensor> into)
    {
        using var checkpoint = TensorCheckpoint.Open(directory);
        foreach (var name in checkpoint.Entries.Select(e => e.Name))
        {
            if (name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal)
                || name.EndsWith("position_ids", StringComparison.Ordinal) || name.StartsWith("lm_head.", StringComparison.Ordinal)
                || name.StartsWith("classifier.", StringComparison.Ordinal) || name.StartsWith("cls.", StringComparison.Ordinal)) continue;
            into[known.Any(k => name.StartsWith(k, StringComparison.Ordinal)) ? name : prefix + name] = checkpoint.ReadTensor(name);
        }
    }
}
