namespace VlPeft.Models.Configs;

/// <summary>Blip2QFormerConfig / InstructBlipQFormerConfig.</summary>
public sealed record QFormerConfig
{
    public int VocabSize { get; init; } = 30522;
    public int HiddenSize { get; init; } = 768;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public int IntermediateSize { get; init; } = 3072;
    public string HiddenAct { get; init; } = "gelu";
    public double HiddenDropoutProb { get; init; } = 0.1;
    public double AttentionProbsDropoutProb { get; init; } = 0.1;
    public int MaxPositionEmbeddings { get; init; } = 512;
    public double LayerNormEps { get; init; } = 1e-12;
    public int PadTokenId { get; init; }
    public int CrossAttentionFrequency { get; init; } = 2;
    /// <summary>Overwritten from the vision hidden size by the composite config, as HF does.</summary>
    public int EncoderHiddenSize { get; init; } = 1408;

    public bool HasCrossAttention(int layer) => layer % CrossAttentionFrequency == 0;
}
