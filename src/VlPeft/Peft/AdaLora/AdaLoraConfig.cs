using System.Text.Json.Nodes;

namespace VlPeft.Peft.AdaLora;

/// <summary>HF PEFT's AdaLoraConfig (it inherits LoraConfig; the LoRA fields AdaLoRA uses are here too).</summary>
public sealed record AdaLoraConfig : PeftConfig
{
    public override string PeftType => "ADALORA";

    public int InitR { get; init; } = 12;
    /// <summary>Target <b>average</b> rank: the final budget is TargetR × number of adapted matrices.</summary>
    public int TargetR { get; init; } = 8;
    public int Tinit { get; init; }
    public int Tfinal { get; init; }
    public int DeltaT { get; init; } = 1;
    public double Beta1 { get; init; } = 0.85;
    public double Beta2 { get; init; } = 0.85;
    public double OrthRegWeight { get; init; } = 0.5;
    /// <summary>Number of optimizer steps the run will take; required.</summary>
    public int TotalStep { get; init; }
    /// <summary>Module (… .lora_E, no adapter name) → kept rank indices; null until the allocator sets it.</summary>
    public IReadOnlyDictionary<string, bool[]>? RankPattern { get; init; }
    public double LoraAlpha { get; init; } = 8;
    public double LoraDropout { get; init; }
    public string Bias { get; init; } = "none";
    public override string BiasMode => Bias;
    public bool FanInFanOut { get; init; }
    /// <summary>Ignored by AdaLoRA (HF warns when it is not 8); kept for the file.</summary>
    public int R { get; init; } = 8;

    public override PeftTuner CreateTuner(string adapterName) => new AdaLoraTuner(this, adapterName);

    /// <summary>An experiment need not count its steps: total_step is filled from the run when not given.</summary>
    public override PeftConfig ForTraining(int totalSteps) => TotalStep > 0 ? this : this with { TotalStep = totalSteps };

    /// <summary>Kept ranks per module path (rank_pattern keys are <c>path.lora_E</c>).</summary>
    public override IReadOnlyDictionary<string, int>? LearnedRanks() =>
        RankPattern?.ToDictionary(kv => kv.Key.EndsWith(".lora_E") ? kv.Key[..^".lora_E".Length] : kv.Key, kv => kv.Value.Count(k => k));

    public override string? ConflictWith(IEnumerable<PeftConfig> existing) =>
        !InferenceMode && existing.Any(c => c is AdaLoraConfig { InferenceMode: false })
            ? "AdaLoRA allows only one trainable adapter (HF PEFT); load others with inference mode" : null;

    public override void Validate()
    {
        base.Validate();
        if (TotalStep <= 0) throw new BadInputException("AdaLoRA needs total_step > 0 (the number of optimizer steps)");
        if (Tinit >= TotalStep - Tfinal)
            throw new BadInputException($"AdaLoRA needs tinit < total_step - tfinal (got tinit={Tinit}, total_step={TotalStep}, tfinal={Tfinal})");
        if (OrthRegWeight < 0) throw new BadInputException("orth_reg_weight must be >= 0");
        if (InitR <= 0 || TargetR < 0 || TargetR > InitR) throw new BadInputException($"need 0 <= target_r <= init_r and init_r > 0 (got {TargetR}, {InitR})");
        if (DeltaT <= 0) throw new BadInputException("deltaT must be positive");
        if (Bias is not ("none" or "all" or "lora_only")) throw new BadInputException($"bias must be none, all or lora_only, got '{Bias}'");
    }

    /// <summary>HF SVDLinear: scaling = lora_alpha if > 0 else r; the forward divides by ranknum + 1e-5.</summary>
    public double Scaling => LoraAlpha > 0 ? LoraAlpha : InitR;

    public override JsonObject ToJson()
    {
        var json = base.ToJson();
        json["init_r"] = InitR;
        json["target_r"] = TargetR;
        json["tinit"] = Tinit;
        json["tfinal"] = Tfinal;
        json["deltaT"] = DeltaT;
        json["beta1"] = Beta1;
        json["beta2"] = Beta2;
        json["orth_reg_weight"] = OrthRegWeight;
        json["total_step"] = TotalStep;
        json["rank_pattern"] = RankPattern == null ? null
            : new JsonObject(RankPattern.OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)new JsonArray(kv.Value.Select(b => (JsonNode)b).ToArray()))));
        json["r"] = R;
        json["lora_alpha"] = LoraAlpha;
        json["lora_dropout"] = LoraDropout;
        json["bias"] = Bias;
        json["fan_in_fan_out"] = FanInFanOut;
        json["init_lora_weights"] = true;
        json["use_rslora"] = false;
        json["use_dora"] = false;
        json["alpha_pattern"] = new JsonObject();
        return json;
    }

    public static AdaLoraConfig Read(ConfigJson json)
    {
        var config = WithCommon(new AdaLoraConfig
        {
            InitR = json.Get("init_r", 12),
            TargetR = json.Get("target_r", 8),
            Tinit = json.Get("tinit", 0),
            Tfinal = json.Get("tfinal", 0),
            DeltaT = json.Get("deltaT", 1),
            Beta1 = json.Get("beta1", 0.85),
            Beta2 = json.Get("beta2", 0.85),
            OrthRegWeight = json.Get("orth_reg_weight", 0.5),
            TotalStep = json.Get<int?>("total_step", null) ?? 0,
            RankPattern = json.Get<Dictionary<string, bool[]>?>("rank_pattern", null),
            LoraAlpha = json.Get("lora_alpha", 8.0),
            LoraDropout = json.Get("lora_dropout", 0.0),
            Bias = json.Get("bias", "none"),
            FanInFanOut = json.Get("fan_in_fan_out", false),
            R = json.Get("r", 8),
        }, json);
        // Fields of the LoraConfig base that AdaLoRA leaves at their defaults.
        foreach (var key in new[] { "init_lora_weights", "use_rslora", "use_dora", "alpha_pattern", "lora_bias" }) json.Node(key);
        return config;
    }
}
