using System.Text.Json.Nodes;
using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Tensors;
using VlPeft.Tests.Cli;
using static TorchSharp.torch;

namespace VlPeft.Tests.Routing;

/// <summary><c>convert routing-base</c>: HF ViT + HF RoBERTa / GPT-2 directories (their own key layouts) → one base.</summary>
public class RoutingCheckpointTests
{
    /// <summary>Writes tensors under HF names (rename maps ours to theirs; null drops) with a config.json and extra files.</summary>
    static void WriteHf(string folder, IEnumerable<(string Name, Tensor Value)> tensors, Func<string, string?> rename, JsonNode config, params (string Name, Tensor Value)[] extra)
    {
        Directory.CreateDirectory(folder);
        var map = tensors.Select(t => (Name: rename(t.Name), t.Value)).Where(t => t.Name is not null).ToDictionary(t => t.Name!, t => t.Value);
        foreach (var (name, value) in extra) map[name] = value;
        SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), map);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
    }

    static JsonObject Part(string preset, string key, string modelType)
    {
        var node = JsonNode.Parse(ModelPresets.Json(preset))![key]!.AsObject();
        node["model_type"] = modelType;
        node["architectures"] = new JsonArray(JsonValue.Create("HfModel"));   // keys the converter carries along untouched
        return node;
    }

    [Fact]
    public void Vit_and_roberta_checkpoints_assemble_into_the_vqa_classifier_with_a_fresh_head()
    {
        using var dir = new TempDirectory();
        torch.manual_seed(31);
        using var source = new VitRobertaForVqa(VitRobertaVqaConfig.Parse(ModelPresets.Json("tiny-vit-roberta-vqa"), "preset"));
        var parameters = source.named_parameters().Select(p => (p.name, (Tensor)p.parameter.detach())).ToList();
        // ViTModel saves bare names; RobertaForMaskedLM keeps "roberta." and has no pooler, but an lm_head.
        WriteHf(dir.File("vit"), parameters, n => n.StartsWith("vit.") ? n["vit.".Length..] : null, Part("tiny-vit-roberta-vqa", "vision_config", "vit"));
        WriteHf(dir.File("roberta"), parameters, n => n.StartsWith("roberta.") && !n.Contains("pooler") ? n : null, Part("tiny-vit-roberta-vqa", "text_config", "roberta"),
            ("lm_head.dense.weight", torch.zeros(64, 64)), ("roberta.embeddings.position_ids", torch.arange(40).unsqueeze(0)));
        File.WriteAllLines(dir.File("roberta/vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 995).Select(i => $"w{i}")));

        var run = CliRunner.Run("convert", "routing-base", "--vit", dir.File("vit"), "--text", dir.File("roberta"), "--out", dir.File("out"));
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.Contains("vit_roberta_vqa", run.Out);
        var (model, processor) = PretrainedModel.LoadWithProcessor(dir.File("out"));
        using (model)
        {
            var loaded = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, value) in parameters.Where(p => p.name.StartsWith("vit.") || (p.name.StartsWith("roberta.") && !p.name.Contains("pooler"))))
                Assert.True(torch.allclose(value, loaded[name], rtol: 0, atol: 0), name);
            Assert.Equal(3129, ((VitRobertaForVqa)model).Config.NumLabels);
            Assert.Equal(new long[] { 3129, 128 }, loaded["classifier.3.weight"].shape);
            Assert.IsType<VqaClassifierProcessor>(processor);
        }
    }

    [Fact]
    public void Gpt2_checkpoint_with_bare_names_and_causal_mask_buffers_assembles_into_the_captioner()
    {
        using var dir = new TempDirectory();
        torch.manual_seed(32);
        using var source = new VitGpt2ForCaptioning(VitGpt2CaptioningConfig.Parse(ModelPresets.Json("tiny-vit-gpt2-captioning"), "preset"));
        var parameters = source.named_parameters().Select(p => (p.name, (Tensor)p.parameter.detach())).ToList();
        WriteHf(dir.File("vit"), parameters, n => n.StartsWith("vit.") ? "vit." + n["vit.".Length..] : null, Part("tiny-vit-gpt2-captioning", "vision_config", "vit"));
        // The gpt2 files: bare names (h.0.attn.c_attn.weight, wte.weight) plus the attn.bias causal-mask buffers.
        WriteHf(dir.File("gpt2"), parameters, n => n.StartsWith("transformer.") ? n["transformer.".Length..] : null, Part("tiny-vit-gpt2-captioning", "text_config", "gpt2"),
            ("h.0.attn.bias", torch.ones(1, 1, 64, 64)), ("lm_head.weight", torch.zeros(1000, 64)));
        using var model = RoutingCheckpoint.AssembleBase(dir.File("vit"), dir.File("gpt2"), dir.File("out"));
        var loaded = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(parameters.Select(p => p.name).OrderBy(n => n), loaded.Keys.OrderBy(n => n));
        foreach (var (name, value) in parameters) Assert.True(torch.allclose(value, loaded[name], rtol: 0, atol: 0), name);
        Assert.Contains("GPT2Tokenizer", File.ReadAllText(dir.File("out/tokenizer_config.json")));

        File.WriteAllText(dir.File("gpt2/config.json"), new JsonObject { ["model_type"] = "bert" }.ToJsonString());
        var error = Assert.Throws<BadInputException>(() => RoutingCheckpoint.AssembleBase(dir.File("vit"), dir.File("gpt2"), dir.File("out2")));
        Assert.Contains("RoBERTa or GPT-2", error.Message);
    }
}
