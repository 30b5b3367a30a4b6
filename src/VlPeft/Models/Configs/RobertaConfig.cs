namespace VlPeft.Models.Configs;

/// <summary>HF RobertaConfig's fields (defaults = roberta-base); BERT's config reads the same keys.</summary>
public sealed record RobertaConfig
{
    public string ModelType { get; init; } = "roberta";
    public int VocabSize { get; init; } = 50265;
    public int HiddenSize { get; init; } = 768;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public int IntermediateSize { get; init; } = 3072;
    public string HiddenAct { get; init; } = "gelu";
    public int MaxPositionEmbeddings { get; init; } = 514;
    public int TypeVocabSize { get; init; } = 1;
    public double LayerNormEps { get; init; } = 1e-5;
    public int PadTokenId { get; init; } = 1;
    public int? BosTokenId { get; init; } = 0;
    public int? EosTokenId { get; init; } = 2;

    public void Check(string file)
    {
        ConfigBounds.Check("text_config.vocab_size", VocabSize, ConfigBounds.Vocab, file);
        ConfigBounds.Check("text_config.hidden_size", HiddenSize, ConfigBounds.Width, file);
        ConfigBounds.Check("text_config.num_hidden_layers", NumHiddenLayers, ConfigBounds.Layers, file);
        ConfigBounds.Check("text_config.num_attention_heads", NumAttentionHeads, HiddenSize, file);
        ConfigBounds.Check("text_config.intermediate_size", IntermediateSize, 4 * ConfigBounds.Width, file);
        ConfigBounds.Check("text_config.max_position_embeddings", MaxPositionEmbeddings, 1 << 20, file);
        ConfigBounds.Check("text_config.type_vocab_size", TypeVocabSize, 1 << 10, file);
        if (HiddenSize % NumAttentionHeads != 0) throw new BadInputException($"text_config.hidden_size {HiddenSize} must be a multiple of num_attention_heads {NumAttentionHeads}", file);
        if (PadTokenId < 0 || PadTokenId >= VocabSize || PadTokenId + 1 >= MaxPositionEmbeddings)
            throw new BadInputException($"text_config.pad_token_id {PadTokenId} must be a token id, and RoBERTa's positions start after it (max_position_embeddings {MaxPositionEmbeddings})", file);
    }
}
