using System.Text.Json.Serialization;

namespace VlPeft.Models.Configs;

/// <summary>HF GPT2Config's fields (defaults = gpt2, the 124M model).</summary>
public sealed record Gpt2Config
{
    public string ModelType { get; init; } = "gpt2";
    public int VocabSize { get; init; } = 50257;
    public int NPositions { get; init; } = 1024;
    public int NEmbd { get; init; } = 768;
    public int NLayer { get; init; } = 12;
    public int NHead { get; init; } = 12;
    /// <summary>Null: 4·n_embd.</summary>
    public int? NInner { get; init; }
    [JsonPropertyName("activation_function")] public string ActivationFunction { get; init; } = "gelu_new";
    public double LayerNormEpsilon { get; init; } = 1e-5;
    public int BosTokenId { get; init; } = 50256;
    public int EosTokenId { get; init; } = 50256;

    [JsonIgnore] public int Inner => NInner ?? 4 * NEmbd;

    public void Check(string file)
    {
        ConfigBounds.Check("text_config.vocab_size", VocabSize, ConfigBounds.Vocab, file);
        ConfigBounds.Check("text_config.n_embd", NEmbd, ConfigBounds.Width, file);
        ConfigBounds.Check("text_config.n_layer", NLayer, ConfigBounds.Layers, file);
        ConfigBounds.Check("text_config.n_head", NHead, NEmbd, file);
        ConfigBounds.Check("text_config.n_inner", Inner, 4 * ConfigBounds.Width, file);
        ConfigBounds.Check("text_config.n_positions", NPositions, 1 << 20, file);
        if (NEmbd % NHead != 0) throw new BadInputException($"text_config.n_embd {NEmbd} must be a multiple of n_head {NHead}", file);
        if (EosTokenId < 0 || EosTokenId >= VocabSize) throw new BadInputException($"text_config.eos_token_id {EosTokenId} must be below vocab_size {VocabSize}", file);
    }
}
