using System.Text.Json.Nodes;

namespace VlPeft.Peft.Routing;

/// <summary>
/// Routed LoRA (peft-methods.md §9.3): LoRA whose bottleneck mixes the text states with the model's visual feature,
/// Δy = s·B·route(A·x_t, A·x_v). With <see cref="Routing"/> "none" it is plain LoRA (which still knows
/// <see cref="EnableLora"/>, for the paper's plain-LoRA baseline on GPT-2's fused c_attn). LoRA's file format:
/// <c>lora_A.{name}.weight</c> [r·g, in], <c>lora_B.{name}.weight</c> [out/n·g, r] (g = enabled parts), plus
/// <c>lora_cross_attn.{name}.{q,k,v,o}</c> for the cross-attention baseline.
/// </summary>
public sealed record RoutedLoraConfig : PeftConfig
{
    public const string Type = "ROUTED_LORA";
    public override string PeftType => Type;

    public int R { get; init; } = 8;
    public double LoraAlpha { get; init; } = 8;
    public double LoraDropout { get; init; }
    /// <summary>Weights stored [in, out] (GPT-2 Conv1D); recorded as HF does, the layer knows its layout.</summary>
    public bool FanInFanOut { get; init; }
    /// <summary>"none", "all" or "lora_only" (the routing paper's LoRA layers keep the adapted layers' biases trainable: lora_only).</summary>
    public string Bias { get; init; } = "none";
    public override string BiasMode => Bias;
    /// <summary>One of <see cref="RoutingFunctions.Names"/>.</summary>
    public string Routing { get; init; } = "add";
    /// <summary>
    /// loralib's MergedLinear: the output splits into equal parts and only the enabled ones are adapted, each with its
    /// own r channels of the bottleneck ([true, false, true] = q and v of GPT-2's c_attn, a 2r bottleneck). Null: the whole output.
    /// </summary>
    public IReadOnlyList<bool>? EnableLora { get; init; }
    public int CrossAttentionHeads { get; init; } = 4;

    public RoutingFunction Function => RoutingFunctions.Parse(Routing);

    public override PeftTuner CreateTuner(string adapterName) => new RoutedLoraTuner(this, adapterName);

    public override void Validate()
    {
        base.Validate();
        if (R <= 0) throw new BadInputException($"r must be a positive integer, got {R}");
        if (!double.IsFinite(LoraAlpha)) throw new BadInputException($"lora_alpha must be a finite number, got {LoraAlpha}");
        if (LoraDropout is < 0 or >= 1) throw new BadInputException($"lora_dropout must be in [0, 1), got {LoraDropout}");
        if (Bias is not ("none" or "all" or "lora_only")) throw new BadInputException($"bias must be none, all or lora_only, got '{Bias}'");
        _ = Function;
        if (EnableLora is { } parts && (parts.Count == 0 || !parts.Any(p => p)))
            throw new BadInputException("enable_lora must list the output parts and enable at least one");
        if (Function == RoutingFunction.CrossAttention && (CrossAttentionHeads < 1 || R * EnabledParts % CrossAttentionHeads != 0))
            throw new BadInputException($"cross_attention_heads {CrossAttentionHeads} must divide the bottleneck width {R * EnabledParts}");
    }

    public int EnabledParts => EnableLora?.Count(p => p) ?? 1;

    public override JsonObject ToJson()
    {
        var json = base.ToJson();
        json["r"] = R;
        json["lora_alpha"] = LoraAlpha;
        json["lora_dropout"] = LoraDropout;
        json["fan_in_fan_out"] = FanInFanOut;
        json["bias"] = Bias;
        json["routing"] = Routing;
        json["enable_lora"] = EnableLora is null ? null : new JsonArray(EnableLora.Select(p => (JsonNode)p).ToArray());
        json["cross_attention_heads"] = CrossAttentionHeads;
        return json;
    }

    public static RoutedLoraConfig Read(ConfigJson json) => WithCommon(new RoutedLoraConfig
    {
        R = json.Get("r", 8),
        LoraAlpha = json.Get("lora_alpha", 8.0),
        LoraDropout = json.Get("lora_dropout", 0.0),
        FanInFanOut = json.Get("fan_in_fan_out", false),
        Bias = json.Get("bias", "none"),
        Routing = json.Get("routing", "add"),
        EnableLora = json.Get<List<bool>?>("enable_lora", null),
        CrossAttentionHeads = json.Get("cross_attention_heads", 4),
    }, json);
}
