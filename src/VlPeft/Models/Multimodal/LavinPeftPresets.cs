using VlPeft.Models.Configs;
using VlPeft.Peft;
using VlPeft.Peft.Bottleneck;
using VlPeft.Peft.LoHa;
using VlPeft.Peft.Lora;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// The Bottleneck Adapter paper's and LaVIN's trainable sets (peft-methods.md §7–8). Every preset trains the
/// visual neck and the modality token in full, as LaVIN trains every parameter whose name contains "adapter".
/// </summary>
public static class LavinPeftPresets
{
    const string VisionSite = @"vision_model\.encoder\.layers\.\d+\.adapter_before_";
    const string LlmSite = @"language_model\.model\.layers\.\d+\.adapter_before_";
    static readonly string[] Connector = { "adapter_proj", "adapter_modality_embedding" };

    public static IReadOnlyList<string> Names { get; } = new[]
    {
        "lavin-router", "lavin-router-block", "bottleneck-adapter", "bottleneck-adapter-weight-scales", "llm-lora", "llm-loha", "lora-repadapter",
    };

    /// <param name="rank">The rank of the LoRA/LoHa presets (the adapters' width is adapter_dim).</param>
    public static TrainingPlan Get(string name, LavinConfig config, int rank = 8)
    {
        // LaVIN: temperature 10 for 7B (d = 4096), 5 for 13B (d = 5120).
        double temperature = config.Text.HiddenSize > 4096 ? 5 : 10;
        var lavin = new BottleneckConfig { AdapterDim = 8, Groups = 2, Scale = 1, Dropout = 0.1, Router = true, Temperature = temperature };
        var paper = new BottleneckConfig { AdapterDim = 16, Groups = 2, Scale = 1, Dropout = 0.1, Temperature = temperature };
        return name switch
        {
            // LaVIN's scripts: adapter_type attn (LLM before attention), visual_adapter_type router (ViT before attention).
            "lavin-router" => Plan(name, lavin, $@"{VisionSite}attention|{LlmSite}attention"),
            // LaVIN's router_block on the ViT: a second adapter before each MLP.
            "lavin-router-block" => Plan(name, lavin, $@"{VisionSite}(attention|ffn)|{LlmSite}attention"),
            // The Bottleneck Adapter paper: no router, adapter dim 16, groups 2; ViT before attention and MLP, LLM before attention.
            "bottleneck-adapter" => Plan(name, paper, $@"{VisionSite}(attention|ffn)|{LlmSite}attention"),
            // Table 3 row 11: the bottleneck with dynamic weight scales (a router over two up-projections).
            "bottleneck-adapter-weight-scales" => Plan(name, paper with { Router = true }, $@"{VisionSite}(attention|ffn)|{LlmSite}attention"),
            "llm-lora" => Plan(name, new LoraConfig { R = Positive(rank), LoraAlpha = 2 * rank, LoraDropout = 0.05 }, BlipPeftPresets.LlmAttention(config.Text)),
            // Table 3 rows 7–9: LoHa in place of the adapter, on the projections the LLM adapter would fold into.
            "llm-loha" => Plan(name, new LoHaConfig { R = Positive(rank), Alpha = rank }, @"language_model\.model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)"),
            // Table 3 row 10: LoRA in the LLM ("default") beside LaVIN's RepAdapter with router in the ViT ("vision").
            "lora-repadapter" => Plan(name, new LoraConfig { R = Positive(rank), LoraAlpha = 2 * rank, LoraDropout = 0.05 }, BlipPeftPresets.LlmAttention(config.Text)) with
            {
                MoreAdapters = new[] { ("vision", (PeftConfig)(lavin with { TargetModules = ModuleSelector.FromRegex($@"{VisionSite}attention") })) },
            },
            _ => throw new BadInputException($"unknown PEFT preset '{name}' (known: {string.Join(", ", Names)})"),
        };
    }

    static int Positive(int rank) => rank > 0 ? rank : throw new BadInputException($"--rank must be positive, got {rank}");

    static TrainingPlan Plan(string name, PeftConfig config, string targets) =>
        new(name, config with { TargetModules = ModuleSelector.FromRegex(targets) }, Connector);
}
