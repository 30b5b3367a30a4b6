using VlPeft.Models.Configs;
using VlPeft.Peft;
using VlPeft.Peft.Lora;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// The experiment families of the Q-Former PEFT paper (peft-methods.md §6): LoRA on chosen
/// Q-Former sublayers and/or the LLM, alpha 8, dropout 0, rank chosen by the caller; query tokens
/// and the projection always trained; the LLM-LoRA family also trains the whole Q-Former; and the
/// full-Q-Former baseline without LoRA.
/// </summary>
public static class BlipPeftPresets
{
    const string Layer = @"qformer\.encoder\.layer\.\d+\.";
    const string QFormerSelf = Layer + @"attention\.attention\.(query|value)";
    const string QFormerCross = Layer + @"crossattention\.(attention\.(query|key|value)|output\.dense)";
    const string QFormerFfn = Layer + @"(intermediate|output|intermediate_query|output_query)\.dense";

    // InstructBLIP_PEFT freezes only LAVIS's visual_encoder: ln_vision (HF: vision_model.post_layernorm), the query
    // tokens and the projection stay trainable in every experiment.
    const string VisionNorm = "vision_model.post_layernorm";
    static readonly string[] QueriesAndProjection = { "query_tokens", "language_projection", VisionNorm };
    static readonly string[] WholeQFormer = { "qformer", "query_tokens", "language_projection", VisionNorm };

    public static IReadOnlyList<string> Names { get; } = new[]
    {
        "qformer-lora-self", "qformer-lora-cross", "qformer-lora-ffn", "qformer-lora-all",
        "llm-lora-attn", "llm-lora-ffn", "llm-lora-all", "qformer-llm-lora", "qformer-full",
    };

    public static TrainingPlan Get(string name, MultimodalConfig config, int rank = 8)
    {
        string qformerAll = $"{QFormerSelf}|{QFormerCross}|{QFormerFfn}";
        string llmAll = $"{LlmAttention(config.Text)}|{LlmFfn(config.Text)}";
        return name switch
        {
            "qformer-lora-self" => Lora(name, QFormerSelf, rank, QueriesAndProjection),
            "qformer-lora-cross" => Lora(name, QFormerCross, rank, QueriesAndProjection),
            "qformer-lora-ffn" => Lora(name, QFormerFfn, rank, QueriesAndProjection),
            "qformer-lora-all" => Lora(name, qformerAll, rank, QueriesAndProjection),
            "llm-lora-attn" => Lora(name, LlmAttention(config.Text), rank, WholeQFormer),
            "llm-lora-ffn" => Lora(name, LlmFfn(config.Text), rank, WholeQFormer),
            "llm-lora-all" => Lora(name, llmAll, rank, WholeQFormer),
            "qformer-llm-lora" => Lora(name, $"{qformerAll}|{llmAll}", rank, QueriesAndProjection),
            "qformer-full" => new TrainingPlan(name, null, WholeQFormer),
            _ => throw new BadInputException($"unknown PEFT preset '{name}' (known: {string.Join(", ", Names)})"),
        };
    }

    /// <summary>The regex of the LLM's attention targets: T5 q,v (self and cross); LLaMA/OPT q_proj, v_proj.</summary>
    public static string LlmAttention(TextConfig text) => text.ModelType switch
    {
        "t5" => @"language_model\.(encoder|decoder)\.block\.\d+\.layer\.\d+\.(SelfAttention|EncDecAttention)\.(q|v)",
        "llama" => @"language_model\.model\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
        "opt" => @"language_model\.model\.decoder\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
        _ => throw new BadInputException($"no LLM LoRA targets for '{text.ModelType}'"),
    };

    /// <summary>The regex of the LLM's FFN targets: T5 wi_0, wi_1, wo (or wi); LLaMA gate/up/down; OPT fc1, fc2.</summary>
    public static string LlmFfn(TextConfig text) => text.ModelType switch
    {
        "t5" => @"language_model\.(encoder|decoder)\.block\.\d+\.layer\.\d+\.DenseReluDense\.(wi|wi_0|wi_1|wo)",
        "llama" => @"language_model\.model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
        "opt" => @"language_model\.model\.decoder\.layers\.\d+\.(fc1|fc2)",
        _ => throw new BadInputException($"no LLM LoRA targets for '{text.ModelType}'"),
    };

    static TrainingPlan Lora(string name, string regex, int rank, string[] inFull)
    {
        if (rank <= 0) throw new BadInputException($"--rank must be positive, got {rank}");
        var config = new LoraConfig { R = rank, LoraAlpha = 8, LoraDropout = 0, TargetModules = ModuleSelector.FromRegex(regex) };
        return new TrainingPlan(name, config, inFull);
    }
}
