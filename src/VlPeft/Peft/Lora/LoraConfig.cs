using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace VlPeft.Peft.Lora;

/// <summary>HF PEFT's LoraConfig fields that VlPeft implements (defaults as HF PEFT's).</summary>
public sealed record LoraConfig : PeftConfig
{
    public override string PeftType => "LORA";

    public int R { get; init; } = 8;
    public double LoraAlpha { get; init; } = 8;
    public double LoraDropout { get; init; }
    /// <summary>Weights stored [in, out] (GPT-2 Conv1D). Our Linear knows its layout; this is recorded for HF.</summary>
    public bool FanInFanOut { get; init; }
    /// <summary>"none", "all" or "lora_only".</summary>
    public string Bias { get; init; } = "none";
    public override string BiasMode => Bias;
    public bool UseRslora { get; init; }
    public bool UseDora { get; init; }
    /// <summary>"true" (kaiming-uniform A, zero B), "gaussian" (A ~ N(0, 1/r)), or "false" (both random; debugging).</summary>
    public string InitLoraWeights { get; init; } = "true";
    /// <summary>Per-module rank overrides: first key whose regex <c>(.*\.)?(KEY)$</c> matches wins.</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = new Dictionary<string, double>();
    /// <summary>lora_B gets a bias (merged into the base bias).</summary>
    public bool LoraBias { get; init; }

    public override PeftTuner CreateTuner(string adapterName) => new LoraTuner(this, adapterName);

    /// <summary>EVA initialises A from activations' SVD on data; VlPeft only loads EVA adapters already trained.</summary>
    public override PeftConfig ForTraining(int totalSteps) => InitLoraWeights == "eva"
        ? throw new BadInputException("init_lora_weights 'eva' (data-driven initialisation) is not implemented for new adapters; a saved EVA adapter loads as a plain LoRA")
        : this;

    public override void Validate()
    {
        base.Validate();
        if (R <= 0) throw new BadInputException($"r must be a positive integer, got {R}");
        if (Bias is not ("none" or "all" or "lora_only")) throw new BadInputException($"bias must be none, all or lora_only, got '{Bias}'");
        // "eva" is accepted: once saved it is a plain LoRA. pissa, olora, loftq, corda change the base weights: refused.
        if (InitLoraWeights is not ("true" or "false" or "gaussian" or "eva"))
            throw new BadInputException($"init_lora_weights '{InitLoraWeights}' is not supported (true, false, gaussian, eva are; methods that rewrite the base weights are not)");
        // As HF PEFT's LoraConfig.__post_init__: a DoRA merge would drop the bias delta, and gaussian init has no defined bias.
        if (LoraBias && UseDora) throw new BadInputException("lora_bias cannot be used together with use_dora");
        if (LoraBias && InitLoraWeights == "gaussian") throw new BadInputException("lora_bias cannot be used with init_lora_weights 'gaussian'");
        if (LoraDropout is < 0 or >= 1) throw new BadInputException($"lora_dropout must be in [0, 1), got {LoraDropout}");
    }

    /// <summary>Rank and alpha for one module path, after rank_pattern / alpha_pattern.</summary>
    public (int Rank, double Alpha) ForModule(string path) =>
        (PatternValue(RankPattern, path) ?? R, PatternValue(AlphaPattern, path) ?? LoraAlpha);

    public double Scaling(int rank, double alpha) => UseRslora ? alpha / Math.Sqrt(rank) : alpha / rank;

    /// <summary>HF PEFT: the first key (in dict order) whose regex <c>(.*\.)?(KEY)$</c> matches the path.</summary>
    internal static T? PatternValue<T>(IReadOnlyDictionary<string, T> pattern, string path) where T : struct
    {
        foreach (var (key, value) in pattern)
            if (Regex.IsMatch(path, $"^(.*\\.)?({key})$")) return value;
        return null;
    }

    public override JsonObject ToJson()
    {
        var json = base.ToJson();
        json["r"] = R;
        json["lora_alpha"] = LoraAlpha;
        json["lora_dropout"] = LoraDropout;
        json["fan_in_fan_out"] = FanInFanOut;
        json["bias"] = Bias;
        json["use_rslora"] = UseRslora;
        json["use_dora"] = UseDora;
        json["init_lora_weights"] = InitLoraWeights switch { "true" => true, "false" => false, var s => s };
        json["rank_pattern"] = new JsonObject(RankPattern.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        json["alpha_pattern"] = new JsonObject(AlphaPattern.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        json["lora_bias"] = LoraBias;
        return json;
    }

    public static LoraConfig Read(ConfigJson json) => WithCommon(new LoraConfig
    {
        R = json.Get("r", 8),
        LoraAlpha = json.Get("lora_alpha", 8.0),
        LoraDropout = json.Get("lora_dropout", 0.0),
        FanInFanOut = json.Get("fan_in_fan_out", false),
        Bias = json.Get("bias", "none"),
        UseRslora = json.Get("use_rslora", false),
        UseDora = json.Get("use_dora", false),
        InitLoraWeights = ReadInit(json.Node("init_lora_weights")),
        RankPattern = json.Get<Dictionary<string, int>?>("rank_pattern", null) ?? new(),
        AlphaPattern = json.Get<Dictionary<string, double>?>("alpha_pattern", null) ?? new(),
        LoraBias = json.Get("lora_bias", false),
    }, json);

    static string ReadInit(JsonNode? node) => node switch
    {
        null => "true",
        JsonValue v when v.TryGetValue(out bool b) => b ? "true" : "false",
        JsonValue v when v.TryGetValue(out string? s) => s!,
        _ => "true",
    };
}
