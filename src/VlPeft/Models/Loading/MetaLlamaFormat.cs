using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Models.Loading;

/// <summary>
/// Meta's original LLaMA checkpoint layout (params.json + consolidated.*.pth; LaVIN's base weights) against HF's
/// (models.md §5): tensor names, and the row permutation of wq/wk that turns Meta's interleaved-pair rotary
/// embedding into HF's rotate_half one. Permuting is what HF's converter does; the inverse goes back.
/// </summary>
public static class MetaLlamaFormat
{
    static readonly (Regex Meta, string Hf)[] names =
    {
        (new(@"^tok_embeddings\.weight$"), "model.embed_tokens.weight"),
        (new(@"^layers\.(\d+)\.attention\.wq\.weight$"), "model.layers.$1.self_attn.q_proj.weight"),
        (new(@"^layers\.(\d+)\.attention\.wk\.weight$"), "model.layers.$1.self_attn.k_proj.weight"),
        (new(@"^layers\.(\d+)\.attention\.wv\.weight$"), "model.layers.$1.self_attn.v_proj.weight"),
        (new(@"^layers\.(\d+)\.attention\.wo\.weight$"), "model.layers.$1.self_attn.o_proj.weight"),
        (new(@"^layers\.(\d+)\.feed_forward\.w1\.weight$"), "model.layers.$1.mlp.gate_proj.weight"),
        (new(@"^layers\.(\d+)\.feed_forward\.w3\.weight$"), "model.layers.$1.mlp.up_proj.weight"),
        (new(@"^layers\.(\d+)\.feed_forward\.w2\.weight$"), "model.layers.$1.mlp.down_proj.weight"),
        (new(@"^layers\.(\d+)\.attention_norm\.weight$"), "model.layers.$1.input_layernorm.weight"),
        (new(@"^layers\.(\d+)\.ffn_norm\.weight$"), "model.layers.$1.post_attention_layernorm.weight"),
        (new(@"^norm\.weight$"), "model.norm.weight"),
        (new(@"^output\.weight$"), "lm_head.weight"),
    };

    /// <summary>The HF name of a Meta tensor name, or null for tensors HF does not have (rope.freqs).</summary>
    public static string? HfName(string metaName)
    {
        foreach (var (meta, hf) in names)
            if (meta.IsMatch(metaName)) return meta.Replace(metaName, hf);
        return null;
    }

    /// <summary>Whether the tensor's rows must be permuted (wq, wk).</summary>
    public static bool IsRotated(string metaName) => Regex.IsMatch(metaName, @"^layers\.\d+\.attention\.w[qk]\.weight$");

    /// <summary>Meta → HF rows of wq/wk [heads·d_head, dim]: per head, view [d_head/2, 2] and transpose to [2, d_head/2].</summary>
    public static Tensor ToHf(Tensor weight, long heads)
    {
        long rows = weight.shape[0], dim = weight.shape[1];
        return weight.view(heads, rows / heads / 2, 2, dim).transpose(1, 2).reshape(rows, dim);
    }

    /// <summary>HF → Meta, the inverse of <see cref="ToHf"/>.</summary>
    public static Tensor ToMeta(Tensor weight, long heads)
    {
        long rows = weight.shape[0], dim = weight.shape[1];
        return weight.view(heads, 2, rows / heads / 2, dim).transpose(1, 2).reshape(rows, dim);
    }

    /// <summary>
    /// Reads a Meta checkpoint directory (params.json + consolidated.NN.pth, model-parallel shards joined along the
    /// dimension Meta split them) as HF LlamaForCausalLM tensors and config. Holds the whole model in memory once.
    /// </summary>
    public static (TextConfig Config, Dictionary<string, Tensor> Weights) Read(string directory, int maxPositionEmbeddings = 2048)
    {
        string paramsFile = Path.Combine(directory, "params.json");
        if (!File.Exists(paramsFile)) throw new BadInputException("no params.json: not a Meta LLaMA checkpoint directory", directory);
        var p = JsonObjects.Parse(File.ReadAllText(paramsFile), paramsFile, "params.json");
        int Int(string key) => p[key]?.GetValue<int>() ?? throw new BadInputException($"params.json has no '{key}'", paramsFile);
        var shards = Directory.GetFiles(directory, "consolidated.*.pth").OrderBy(f => f, StringComparer.Ordinal).Select(PthFile.ReadTensors).ToList();
        if (shards.Count == 0) throw new BadInputException("no consolidated.*.pth files", directory);
        int heads = Int("n_heads"), kvHeads = p["n_kv_heads"]?.GetValue<int>() ?? heads;
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var name in shards[0].Keys)
        {
            if (HfName(name) is not string hf) continue;
            var parts = shards.Select(s => s.TryGetValue(name, out var t) ? t : throw new BadInputException($"shard lacks '{name}'", directory)).ToList();
            var joined = parts.Count == 1 || parts[0].dim() == 1 ? parts[0] : torch.cat(parts.ToArray(), ShardDimension(name));
            if (IsRotated(name)) joined = ToHf(joined, name.Contains(".wk.") ? kvHeads : heads);
            weights[hf] = joined;
        }
        var embed = weights.GetValueOrDefault("model.embed_tokens.weight") ?? throw new BadInputException("no tok_embeddings.weight", directory);
        var gate = weights.GetValueOrDefault("model.layers.0.mlp.gate_proj.weight") ?? throw new BadInputException("no layers.0.feed_forward.w1.weight", directory);
        var config = new TextConfig
        {
            ModelType = "llama", VocabSize = (int)embed.shape[0], HiddenSize = Int("dim"), IntermediateSize = (int)gate.shape[0],
            NumHiddenLayers = Int("n_layers"), NumAttentionHeads = heads, NumKeyValueHeads = kvHeads,
            RmsNormEps = p["norm_eps"]?.GetValue<double>() ?? 1e-6, RopeTheta = p["rope_theta"]?.GetValue<double>() ?? 10000,
            MaxPositionEmbeddings = maxPositionEmbeddings, PadTokenId = 0, BosTokenId = 1, EosTokenId = 2,
        };
        return (config, weights);
    }

    /// <summary>
    /// Writes a Meta checkpoint directory as a HF LlamaForCausalLM directory: model.safetensors, config.json and the
    /// tokenizer.model beside it (the LaVIN base assembly reads this).
    /// </summary>
    public static TextConfig Convert(string metaDirectory, string outDirectory, int maxPositionEmbeddings = 2048)
    {
        var (config, weights) = Read(metaDirectory, maxPositionEmbeddings);
        Directory.CreateDirectory(outDirectory);
        SafetensorsWriter.Write(Path.Combine(outDirectory, "model.safetensors"), weights, new Dictionary<string, string> { ["format"] = "pt" });
        var json = MultimodalConfig.TextConfigJson(config).AsObject();
        json["architectures"] = new JsonArray("LlamaForCausalLM");
        AtomicFile.WriteAllText(Path.Combine(outDirectory, "config.json"), json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        foreach (var name in new[] { "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json" })
            if (File.Exists(Path.Combine(metaDirectory, name))) File.Copy(Path.Combine(metaDirectory, name), Path.Combine(outDirectory, name), overwrite: true);
        return config;
    }

    /// <summary>Meta's model parallelism: column-parallel layers and the output split rows; wo, w2 and the embedding split columns.</summary>
    static int ShardDimension(string metaName) =>
        Regex.IsMatch(metaName, @"(attention\.wo|feed_forward\.w2)\.weight$|^tok_embeddings\.weight$") ? 1 : 0;
}
