namespace VlPeft.Models.Configs;

/// <summary>
/// Range checks of config.json sizes: every size positive and within what a real checkpoint could hold, so a
/// corrupt or hostile config is one clear error (not a native "negative dimension" or an endless build).
/// The bounds are far above any paper model.
/// </summary>
static class ConfigBounds
{
    public const long Layers = 1024, Width = 1 << 16, Vocab = 1 << 24;

    public static void Check(string key, long value, long max, string file)
    {
        if (value < 1 || value > max) throw new BadInputException($"{key} must be between 1 and {max:N0}, got {value}", file);
    }

    public static void CheckVision(VisionConfig v, string file)
    {
        Check("vision_config.hidden_size", v.HiddenSize, Width, file);
        Check("vision_config.intermediate_size", v.IntermediateSize, 4 * Width, file);
        Check("vision_config.num_hidden_layers", v.NumHiddenLayers, Layers, file);
        Check("vision_config.num_attention_heads", v.NumAttentionHeads, v.HiddenSize, file);
        Check("vision_config.image_size", v.ImageSize, 8192, file);
        Check("vision_config.patch_size", v.PatchSize, v.ImageSize, file);
    }

    /// <summary>LLaMA and OPT text configs.</summary>
    public static void CheckDecoderOnly(TextConfig t, string file)
    {
        Check("text_config.hidden_size", t.HiddenSize, Width, file);
        Check("text_config.num_hidden_layers", t.NumHiddenLayers, Layers, file);
        Check("text_config.num_attention_heads", t.NumAttentionHeads, t.HiddenSize, file);
        Check(t.ModelType == "opt" ? "text_config.ffn_dim" : "text_config.intermediate_size", t.ModelType == "opt" ? t.FfnDim : t.IntermediateSize, 4 * Width, file);
        Check("text_config.max_position_embeddings", t.MaxPositionEmbeddings, 1 << 24, file);
    }
}
