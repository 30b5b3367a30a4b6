using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Models.Configs;

/// <summary>
/// The routing paper's two pipelines as config.json (models.md §10; they have no HF config, so the keys follow HF
/// conventions): a ViT <c>vision_config</c> (ViTConfig keys) and a <c>text_config</c> of the same width (the paper
/// has no projection between them).
/// </summary>
static class RoutingPipelineConfig
{
    /// <summary>google/vit-base-patch16-224-in21k.</summary>
    public static VisionConfig VitBase { get; } = new()
    {
        HiddenSize = 768, IntermediateSize = 3072, NumHiddenLayers = 12, NumAttentionHeads = 12, ImageSize = 224, PatchSize = 16,
        HiddenAct = "gelu", LayerNormEps = 1e-12, QkvBias = true,
    };

    public static JsonObject Root(string json, string file, string type)
    {
        var root = JsonObjects.Parse(json, file, "config.json");
        if (root["model_type"]?.GetValue<string>() != type) throw new BadInputException($"model_type must be '{type}'", file);
        return root;
    }

    /// <summary>vision_config over ViTConfig's defaults (keys the file leaves out keep ViT-B/16's values).</summary>
    public static VisionConfig Vision(JsonObject root, string file)
    {
        var merged = VisionJson(VitBase).AsObject();
        if (root["vision_config"] is JsonObject given)
            foreach (var (key, value) in given) merged[key] = value?.DeepClone();
        else if (root["vision_config"] is not null) throw new BadInputException("vision_config must be an object", file);
        var vision = HfJson.Read<VisionConfig>(merged, "vision_config", file);
        ConfigBounds.CheckVision(vision, file);
        return vision;
    }

    public static void CheckWidths(long vision, long text, string file)
    {
        if (vision != text)
            throw new BadInputException($"vision_config.hidden_size {vision} must equal the text model's width {text}: the routing pipelines feed the pooled ViT feature to the text model without a projection", file);
    }

    public static JsonNode VisionJson(VisionConfig vision) => JsonSerializer.SerializeToNode(vision, HfJson.Options)!;
}

/// <summary>ViT + RoBERTa VQA classifier (model_type vit_roberta_vqa), models.md §10.1.</summary>
public sealed record VitRobertaVqaConfig
{
    public const string Type = "vit_roberta_vqa";

    public VisionConfig Vision { get; init; } = RoutingPipelineConfig.VitBase;
    public RobertaConfig Text { get; init; } = new();
    /// <summary>The answer vocabulary by label id (HF's id2label; 3,129 answers for VQAv2).</summary>
    public IReadOnlyList<string> Id2Label { get; init; } = Array.Empty<string>();
    /// <summary>Question tokens including the special ones (the paper: 20, or 19 with the visual prefix).</summary>
    public int MaxQuestionTokens { get; init; } = 19;

    public int NumLabels => Id2Label.Count;

    public static VitRobertaVqaConfig Parse(string json, string file)
    {
        var root = RoutingPipelineConfig.Root(json, file, Type);
        var config = new VitRobertaVqaConfig
        {
            Vision = RoutingPipelineConfig.Vision(root, file),
            Text = HfJson.Read<RobertaConfig>(root["text_config"], "text_config", file),
            Id2Label = ReadLabels(root, file),
            MaxQuestionTokens = root["max_question_tokens"]?.GetValue<int>() ?? 19,
        };
        config.Text.Check(file);
        RoutingPipelineConfig.CheckWidths(config.Vision.HiddenSize, config.Text.HiddenSize, file);
        ConfigBounds.Check("max_question_tokens", config.MaxQuestionTokens, config.Text.MaxPositionEmbeddings - config.Text.PadTokenId - 2, file);
        return config;
    }

    /// <summary>{"0": "", "1": "yes", …} with every id from 0 to n − 1 (HF's id2label), or HF's LABEL_i names for num_labels.</summary>
    static IReadOnlyList<string> ReadLabels(JsonObject root, string file)
    {
        if (root["id2label"] is null && root["num_labels"] is JsonValue n && n.TryGetValue(out int count))
        {
            ConfigBounds.Check("num_labels", count, 1 << 20, file);
            return Enumerable.Range(0, count).Select(i => $"LABEL_{i}").ToList();
        }
        if (root["id2label"] is not JsonObject map || map.Count == 0) throw new BadInputException("id2label (or num_labels) must give the classifier's answers", file);
        ConfigBounds.Check("the number of labels", map.Count, 1 << 20, file);
        var labels = new string[map.Count];
        foreach (var (key, value) in map)
        {
            if (!int.TryParse(key, out int id) || id < 0 || id >= labels.Length || labels[id] != null)
                throw new BadInputException($"id2label key '{key}' must be a distinct class id from 0 to {labels.Length - 1}", file);
            labels[id] = value?.GetValue<string>() ?? throw new BadInputException($"id2label['{key}'] must be a string", file);
        }
        return labels;
    }

    public string ToJson() => new JsonObject
    {
        ["model_type"] = Type,
        ["vision_config"] = RoutingPipelineConfig.VisionJson(Vision),
        ["text_config"] = JsonSerializer.SerializeToNode(Text, HfJson.Options),
        ["id2label"] = new JsonObject(Id2Label.Select((label, id) => KeyValuePair.Create(id.ToString(), (JsonNode?)label))),
        ["max_question_tokens"] = MaxQuestionTokens,
    }.ToJsonString(HfJson.Options);
}

/// <summary>ViT + GPT-2 captioner (model_type vit_gpt2_captioning), models.md §10.2.</summary>
public sealed record VitGpt2CaptioningConfig
{
    public const string Type = "vit_gpt2_captioning";

    public VisionConfig Vision { get; init; } = RoutingPipelineConfig.VitBase;
    public Gpt2Config Text { get; init; } = new();
    /// <summary>Caption tokens including the closing EOS (the paper: 50).</summary>
    public int MaxCaptionTokens { get; init; } = 50;

    public static VitGpt2CaptioningConfig Parse(string json, string file)
    {
        var root = RoutingPipelineConfig.Root(json, file, Type);
        var config = new VitGpt2CaptioningConfig
        {
            Vision = RoutingPipelineConfig.Vision(root, file),
            Text = HfJson.Read<Gpt2Config>(root["text_config"], "text_config", file),
            MaxCaptionTokens = root["max_caption_tokens"]?.GetValue<int>() ?? 50,
        };
        config.Text.Check(file);
        RoutingPipelineConfig.CheckWidths(config.Vision.HiddenSize, config.Text.NEmbd, file);
        ConfigBounds.Check("max_caption_tokens", config.MaxCaptionTokens, config.Text.NPositions - 1, file);
        return config;
    }

    public string ToJson() => new JsonObject
    {
        ["model_type"] = Type,
        ["vision_config"] = RoutingPipelineConfig.VisionJson(Vision),
        ["text_config"] = JsonSerializer.SerializeToNode(Text, HfJson.Options),
        ["max_caption_tokens"] = MaxCaptionTokens,
    }.ToJsonString(HfJson.Options);
}
