using System.CommandLine;

namespace VlPeft.Cli;

/// <summary>The options train, eval, predict, merge and forward share, defined once.</summary>
static class SharedOptions
{
    public static Option<string> Model(string description = "HF checkpoint directory (config.json + safetensors + tokenizer files)") =>
        new("--model") { Description = description, Required = true };

    /// <summary>--model where an experiment file may already name the model.</summary>
    public static Option<string?> ModelOverride() => new("--model") { Description = "HF checkpoint directory (overrides the experiment file's model: path:)" };

    public static Option<string?> Quantize() => new("--quantize")
    {
        Description = "Quantized storage of the frozen towers' linear weights: nf4, int8 or none (overrides model.quantize)",
    };

    public static Option<bool> QuantizeEmbeddings() => new("--quantize-embeddings")
    {
        Description = "Quantize the token embedding tables of the quantized parts too (overrides model.quantize_embeddings)",
    };

    public static Option<string?> Data() => new("--data") { Description = "Data directory (overrides the experiment file's data:)" };

    public static Option<string> ExperimentFile(string description = "Experiment file (configs/*.yaml)") =>
        new("--config") { Description = description, Required = true };

    public static Option<string?> Adapter(string description = "Adapter directory (HF PEFT format: adapter_config.json + adapter_model.safetensors)") =>
        new("--adapter") { Description = description };

    public static Option<string> RequiredAdapter() =>
        new("--adapter") { Description = "Adapter directory (HF PEFT format: adapter_config.json + adapter_model.safetensors)", Required = true };
}
