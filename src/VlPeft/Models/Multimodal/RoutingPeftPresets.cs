using VlPeft.Peft;
using VlPeft.Peft.Lora;
using VlPeft.Peft.Routing;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// The routing paper's trainable sets (peft-methods.md §9.5–9.6). RoBERTa: LoRA or routed LoRA on query and value with
/// their biases (LayerNorms frozen, as the LoRA script's --freeze_ln), or adapters after both output denses; the
/// classifier always trains. GPT-2: LoRA or routed LoRA on c_attn's q and v slices (a 2r bottleneck) with c_attn's
/// bias and ln_1/ln_2 trainable, or one adapter per block (post_module, residual inside). α = r (the scripts: 128/128).
/// The routing function of the routed presets is "add" (the scripts' --element_add); experiment files pick another with <c>routing:</c>.
/// </summary>
public static class RoutingPeftPresets
{
    public static IReadOnlyList<string> RobertaNames { get; } = new[] { "roberta-lora", "roberta-routed-lora", "roberta-cross-attention", "roberta-adapter", "roberta-routed-adapter" };
    public static IReadOnlyList<string> Gpt2Names { get; } = new[] { "gpt2-lora", "gpt2-routed-lora", "gpt2-cross-attention", "gpt2-adapter", "gpt2-routed-adapter" };

    const string RobertaQv = @"roberta\.encoder\.layer\.\d+\.attention\.self\.(query|value)";
    const string RobertaSites = @"roberta\.encoder\.layer\.\d+\.(attention\.output|output)\.adapter";
    const string Gpt2Attn = @"transformer\.h\.\d+\.attn\.c_attn";
    const string Gpt2Sites = @"transformer\.h\.\d+\.adapter";
    static readonly bool[] QAndV = { true, false, true };

    public static TrainingPlan Roberta(string name, int rank, int adapterDim = 64)
    {
        var inFull = new[] { "classifier" };
        return name switch
        {
            "roberta-lora" => new(name, new LoraConfig { R = Positive(rank), LoraAlpha = rank, Bias = "lora_only", TargetModules = ModuleSelector.FromRegex(RobertaQv) }, inFull),
            "roberta-routed-lora" => new(name, RoutedLora(rank, "add", RobertaQv, null), inFull),
            "roberta-cross-attention" => new(name, RoutedLora(rank, "cross_attention", RobertaQv, null), inFull),
            "roberta-adapter" => new(name, Adapter(adapterDim, "none", "gelu", residual: false, RobertaSites), inFull),
            "roberta-routed-adapter" => new(name, Adapter(adapterDim, "add", "gelu", residual: false, RobertaSites), inFull),
            _ => throw new BadInputException($"unknown PEFT preset '{name}' (known: {string.Join(", ", RobertaNames)})"),
        };
    }

    public static TrainingPlan Gpt2(string name, int rank, int layers, int adapterDim = 128)
    {
        var norms = Enumerable.Range(0, layers).SelectMany(i => new[] { $"transformer.h.{i}.ln_1", $"transformer.h.{i}.ln_2" }).ToArray();
        return name switch
        {
            "gpt2-lora" => new(name, RoutedLora(rank, "none", Gpt2Attn, QAndV), norms),
            "gpt2-routed-lora" => new(name, RoutedLora(rank, "add", Gpt2Attn, QAndV), norms),
            "gpt2-cross-attention" => new(name, RoutedLora(rank, "cross_attention", Gpt2Attn, QAndV), norms),
            "gpt2-adapter" => new(name, Adapter(adapterDim, "none", "gelu_new", residual: true, Gpt2Sites), Array.Empty<string>()),
            "gpt2-routed-adapter" => new(name, Adapter(adapterDim, "add", "gelu_new", residual: true, Gpt2Sites), Array.Empty<string>()),
            _ => throw new BadInputException($"unknown PEFT preset '{name}' (known: {string.Join(", ", Gpt2Names)})"),
        };
    }

    static RoutedLoraConfig RoutedLora(int rank, string routing, string targets, bool[]? parts) => new()
    {
        R = Positive(rank), LoraAlpha = rank, Bias = "lora_only", Routing = routing, EnableLora = parts, FanInFanOut = parts is not null,
        TargetModules = ModuleSelector.FromRegex(targets),
    };

    static RoutedAdapterConfig Adapter(int dim, string routing, string activation, bool residual, string sites) => new()
    {
        AdapterDim = dim, Routing = routing, Activation = activation, Residual = residual, TargetModules = ModuleSelector.FromRegex(sites),
    };

    static int Positive(int rank) => rank > 0 ? rank : throw new BadInputException($"--rank must be positive, got {rank}");
}
