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
