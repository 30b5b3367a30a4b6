using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Models.Configs;

/// <summary>
/// Blip2Config / InstructBlipConfig: nested vision_config, qformer_config, text_config plus the
/// number of query tokens. <see cref="ModelType"/> is "blip-2" or "instructblip".
/// </summary>
public sealed record MultimodalConfig
{
    public string ModelType { get; init; } = "instructblip";
    public int NumQueryTokens { get; init; } = 32;
    public VisionConfig Vision { get; init; } = new();
    public QFormerConfig QFormer { get; init; } = new();
    public TextConfig Text { get; init; } = new();

    public bool IsInstructBlip => ModelType == "instructblip";
    public bool DecoderOnly => !Text.IsEncoderDecoder;

    /// <summary>Parses a HF config.json text.</summary>
    public static MultimodalConfig Parse(string json, string file)
    {
        var root = JsonObjects.Parse(json, file, "config.json");
        string modelType = root["model_type"]?.GetValue<string>() ?? throw new BadInputException("config.json has no model_type", file);
        if (modelType is not ("blip-2" or "instructblip"))
            throw new BadInputException($"model_type '{modelType}' is not supported (blip-2 and instructblip are)", file);
        var vision = HfJson.Read<VisionConfig>(root["vision_config"], "vision_config", file);
        var qformer = HfJson.Read<QFormerConfig>(root["qformer_config"], "qformer_config", file) with { EncoderHiddenSize = vision.HiddenSize };
        var text = HfJson.Read<TextConfig>(root["text_config"], "text_config", file);
        if (text.ModelType is not ("t5" or "llama" or "opt"))
            throw new BadInputException($"text_config.model_type '{text.ModelType}' is not supported (t5, llama, opt are)", file);
        var config = new MultimodalConfig
        {
            ModelType = modelType,
            NumQueryTokens = root["num_query_tokens"]?.GetValue<int>() ?? 32,
            Vision = vision,
            QFormer = qformer,
            Text = text,
        };
        config.CheckSizes(file);
        return config;
    }

    /// <summary>
    /// Every size positive and within what a real checkpoint could hold, so a corrupt or hostile config.json is
    /// one clear error (not a native "negative dimension" or an endless build). Bounds are far above any paper model.
    /// </summary>
    void CheckSizes(string file)
    {
        void Check(string key, long value, long max) => ConfigBounds.Check(key, value, max, file);
        const long Layers = ConfigBounds.Layers, Width = ConfigBounds.Width, Vocab = ConfigBounds.Vocab;
        Check("num_query_tokens", NumQueryTokens, 4096);
        ConfigBounds.CheckVision(Vision, file);
        Check("qformer_config.vocab_size", QFormer.VocabSize, Vocab);
        Check("qformer_config.hidden_size", QFormer.HiddenSize, Width);
        Check("qformer_config.intermediate_size", QFormer.IntermediateSize, 4 * Width);
        Check("qformer_config.num_hidden_layers", QFormer.NumHiddenLayers, Layers);
        Check("qformer_config.num_attention_heads", QFormer.NumAttentionHeads, QFormer.HiddenSize);
        Check("qformer_config.max_position_embeddings", QFormer.MaxPositionEmbeddings, 1 << 20);
        Check("qformer_config.cross_attention_frequency", QFormer.CrossAttentionFrequency, Layers);
        Check("text_config.vocab_size", Text.VocabSize, Vocab);
        if (Text.ModelType == "t5")
        {
            Check("text_config.d_model", Text.DModel, Width);
            Check("text_config.d_kv", Text.DKv, Width);
            Check("text_config.d_ff", Text.DFf, 4 * Width);
            Check("text_config.num_layers", Text.NumLayers, Layers);
            Check("text_config.num_decoder_layers", Text.NumDecoderLayers ?? Text.NumLayers, Layers);
            Check("text_config.num_heads", Text.NumHeads, Width);
        }
        else ConfigBounds.CheckDecoderOnly(Text, file);
    }

    public static MultimodalConfig Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new BadInputException("config.json not found", file);
        return Parse(File.ReadAllText(file), file);
    }

    /// <summary>Writes the config in HF's layout (nested configs with snake_case keys).</summary>
    public string ToJson()
    {
        var root = new JsonObject
        {
            ["model_type"] = ModelType,
            ["num_query_tokens"] = NumQueryTokens,
            ["use_decoder_only_language_model"] = DecoderOnly,
            ["vision_config"] = JsonSerializer.SerializeToNode(Vision, HfJson.Options),
            ["qformer_config"] = JsonSerializer.SerializeToNode(QFormer, HfJson.Options),
            ["text_config"] = TextConfigJson(Text),
        };
        return root.ToJsonString(HfJson.Options);
    }

    static readonly string[] CommonTextKeys = { "model_type", "vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings" };

    /// <summary>The keys each LM family's HF config has (T5Config, LlamaConfig, OPTConfig).</summary>
    static readonly Dictionary<string, string[]> TextKeys = new()
    {
        ["t5"] = new[] { "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "relative_attention_num_buckets",
            "relative_attention_max_distance", "dropout_rate", "layer_norm_epsilon", "feed_forward_proj", "dense_act_fn", "decoder_start_token_id" },
        ["llama"] = new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
            "rope_theta", "hidden_act", "max_position_embeddings", "attention_dropout", "attention_bias", "mlp_bias" },
        ["opt"] = new[] { "hidden_size", "ffn_dim", "word_embed_proj_dim", "num_hidden_layers", "num_attention_heads", "do_layer_norm_before",
            "activation_function", "enable_bias", "dropout", "attention_dropout", "max_position_embeddings" },
    };

    /// <summary>
    /// text_config with only its family's keys. Another family's keys would not be harmless: HF's
    /// T5Config maps hidden_size, num_attention_heads and num_hidden_layers onto d_model, num_heads and
    /// num_layers, so LLaMA-sized defaults left in a T5 text_config would resize the model in Transformers.
    /// </summary>
    internal static JsonNode TextConfigJson(TextConfig text)
    {
        var node = JsonSerializer.SerializeToNode(text, HfJson.Options)!.AsObject();
        var keep = CommonTextKeys.Concat(TextKeys.GetValueOrDefault(text.ModelType) ?? Array.Empty<string>()).ToHashSet();
        foreach (var key in node.Select(p => p.Key).Where(k => !keep.Contains(k)).ToList()) node.Remove(key);
        return node;
    }
}
