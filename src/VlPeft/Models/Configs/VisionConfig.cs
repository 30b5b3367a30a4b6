using System.Text.Json.Serialization;

namespace VlPeft.Models.Configs;

/// <summary>Blip2VisionConfig / InstructBlipVisionConfig (defaults = the EVA ViT-g/14 of the paper checkpoints).</summary>
public sealed record VisionConfig
{
    public int HiddenSize { get; init; } = 1408;
    public int IntermediateSize { get; init; } = 6144;
    public int NumHiddenLayers { get; init; } = 39;
    public int NumAttentionHeads { get; init; } = 16;
    public int ImageSize { get; init; } = 224;
    public int PatchSize { get; init; } = 14;
    public int NumChannels { get; init; } = 3;
    public string HiddenAct { get; init; } = "gelu";
    public double LayerNormEps { get; init; } = 1e-6;
    public double AttentionDropout { get; init; }
    public bool QkvBias { get; init; } = true;

    [JsonIgnore] public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);
}
