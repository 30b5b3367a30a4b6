using System.Text.Json.Serialization;

namespace VlPeft.Models.Configs;

/// <summary>
/// The language model's config (text_config): one record for the T5, LLaMA and OPT families,
/// holding each family's HF field names. <see cref="ModelType"/> says which fields apply.
/// </summary>
public sealed record TextConfig
{
    /// <summary>"t5", "llama" or "opt".</summary>
    public string ModelType { get; init; } = "t5";
    public int VocabSize { get; init; } = 32128;

    // T5
    public int DModel { get; init; } = 2048;
    public int DKv { get; init; } = 64;
    public int DFf { get; init; } = 5120;
    public int NumLayers { get; init; } = 24;
    public int? NumDecoderLayers { get; init; }
    public int NumHeads { get; init; } = 32;
    public int RelativeAttentionNumBuckets { get; init; } = 32;
    public int RelativeAttentionMaxDistance { get; init; } = 128;
    public double DropoutRate { get; init; } = 0.1;
    public double LayerNormEpsilon { get; init; } = 1e-6;
    public string FeedForwardProj { get; init; } = "gated-gelu";
    /// <summary>The BLIP-2/InstructBLIP T5 configs say "gelu" (exact); the JSON value wins, as in HF v4.</summary>
    public string? DenseActFn { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public int DecoderStartTokenId { get; init; }

    // LLaMA and OPT
    public int HiddenSize { get; init; } = 4096;
    public int IntermediateSize { get; init; } = 11008;
    public int NumHiddenLayers { get; init; } = 32;
    public int NumAttentionHeads { get; init; } = 32;
    public int? NumKeyValueHeads { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public string HiddenAct { get; init; } = "silu";
    public int MaxPositionEmbeddings { get; init; } = 2048;
    /// <summary>LLaMA: biases on q, k, v, o (HF LlamaConfig; a checkpoint with folded adapters has them).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>LLaMA: biases on gate, up, down.</summary>
    public bool MlpBias { get; init; }

    // OPT
    public int FfnDim { get; init; } = 10240;
    public int WordEmbedProjDim { get; init; } = 2560;
    public bool DoLayerNormBefore { get; init; } = true;
    [JsonPropertyName("activation_function")] public string ActivationFunction { get; init; } = "relu";
    public bool EnableBias { get; init; } = true;
    public double Dropout { get; init; } = 0.1;
    public double AttentionDropout { get; init; }

    public int PadTokenId { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }

    [JsonIgnore] public bool IsEncoderDecoder => ModelType == "t5";

    /// <summary>T5's gated FFN activation: dense_act_fn if given, else derived from feed_forward_proj.</summary>
    [JsonIgnore] public string T5Activation => DenseActFn ?? (FeedForwardProj == "gated-gelu" ? "gelu_new" : FeedForwardProj.Replace("gated-", ""));
    [JsonIgnore] public bool T5IsGated => FeedForwardProj.StartsWith("gated-");
}
