using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Models.Configs;

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
