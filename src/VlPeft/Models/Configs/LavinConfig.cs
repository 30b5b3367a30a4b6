using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Models.Configs;

/// <summary>
/// The LaVIN-style model's config.json (model_type "lavin"; LaVIN has no HF config, so the keys follow HF
/// conventions): a CLIP vision_config, a LLaMA text_config, the ViT blocks whose [CLS] become visual tokens,
/// the visual neck's width and activation, and the placeholder id marking where those tokens go in input_ids.
/// </summary>
public sealed record LavinConfig
{
    public const string Type = "lavin";

    public VisionConfig Vision { get; init; } = new() { HiddenSize = 1024, IntermediateSize = 4096, NumHiddenLayers = 24, NumAttentionHeads = 16, PatchSize = 14, HiddenAct = "quick_gelu", LayerNormEps = 1e-5 };
    public TextConfig Text { get; init; } = new() { ModelType = "llama" };
    /// <summary>1-based ViT blocks whose output [CLS] is a visual token (LaVIN: 4, 8, …, 24).</summary>
    public IReadOnlyList<int> VisionFeatureLayers { get; init; } = new[] { 4, 8, 12, 16, 20, 24 };
    /// <summary>The neck's hidden width (LaVIN's hidden_proj: 128).</summary>
    public int NeckHiddenSize { get; init; } = 128;
    /// <summary>"silu": LaVIN's Linear → SiLU → Linear; "swiglu": the gated form the Bottleneck Adapter paper names.</summary>
    public string NeckActivation { get; init; } = "silu";
    /// <summary>The input id that marks visual-token positions (the processor writes one per visual token).</summary>
    public int ImageTokenIndex { get; init; }

    public int NumVisualTokens => VisionFeatureLayers.Count;

    public static LavinConfig Parse(string json, string file)
    {
        var root = JsonObjects.Parse(json, file, "config.json");
        if (root["model_type"]?.GetValue<string>() != Type) throw new BadInputException($"model_type must be '{Type}'", file);
        var defaults = new LavinConfig();
        var text = HfJson.Read<TextConfig>(root["text_config"], "text_config", file);
        if (text.ModelType != "llama") throw new BadInputException($"text_config.model_type must be 'llama' for LaVIN, got '{text.ModelType}'", file);
        var config = new LavinConfig
        {
            Vision = root["vision_config"] is null ? defaults.Vision : HfJson.Read<VisionConfig>(root["vision_config"], "vision_config", file),
            Text = text,
            VisionFeatureLayers = root["vision_feature_layers"]?.Deserialize<int[]>() ?? defaults.VisionFeatureLayers,
            NeckHiddenSize = root["neck_hidden_size"]?.GetValue<int>() ?? defaults.NeckHiddenSize,
            NeckActivation = root["neck_activation"]?.GetValue<string>() ?? defaults.NeckActivation,
            ImageTokenIndex = root["image_token_index"]?.GetValue<int>() ?? 0,
        };
        config.Check(file);
        return config;
    }

    void Check(string file)
    {
        ConfigBounds.CheckVision(Vision, file);
        ConfigBounds.CheckDecoderOnly(Text, file);
        ConfigBounds.Check("text_config.vocab_size", Text.VocabSize, ConfigBounds.Vocab, file);
        ConfigBounds.Check("neck_hidden_size", NeckHiddenSize, ConfigBounds.Width, file);
        if (VisionFeatureLayers.Count == 0 || VisionFeatureLayers.Any(l => l < 1 || l > Vision.NumHiddenLayers))
            throw new BadInputException($"vision_feature_layers must name blocks 1..{Vision.NumHiddenLayers}, got [{string.Join(", ", VisionFeatureLayers)}]", file);
        if (NeckActivation is not ("silu" or "swiglu")) throw new BadInputException($"neck_activation must be silu or swiglu, got '{NeckActivation}'", file);
        if (ImageTokenIndex < 0 || ImageTokenIndex >= Text.VocabSize) throw new BadInputException($"image_token_index must be a token id below {Text.VocabSize}, got {ImageTokenIndex}", file);
    }

    public string ToJson() => new JsonObject
    {
        ["model_type"] = Type,
        ["vision_config"] = VisionConfigJson(),
        ["text_config"] = MultimodalConfig.TextConfigJson(Text),
        ["vision_feature_layers"] = new JsonArray(VisionFeatureLayers.Select(l => (JsonNode)l).ToArray()),
        ["neck_hidden_size"] = NeckHiddenSize,
        ["neck_activation"] = NeckActivation,
        ["image_token_index"] = ImageTokenIndex,
    }.ToJsonString(HfJson.Options);

    /// <summary>CLIPVisionConfig's keys: BLIP's qkv_bias does not apply (CLIP's q, k, v always have biases).</summary>
    JsonNode VisionConfigJson()
    {
        var node = JsonSerializer.SerializeToNode(Vision, HfJson.Options)!.AsObject();
        node.Remove("qkv_bias");
        return node;
    }
}
