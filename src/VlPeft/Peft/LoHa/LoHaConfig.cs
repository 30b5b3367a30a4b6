using System.Text.Json.Nodes;
using VlPeft.Peft.Lora;

namespace VlPeft.Peft.LoHa;

/// <summary>HF PEFT's LoHaConfig for linear layers (rank/module dropout and Conv options are not implemented).</summary>
public sealed record LoHaConfig : PeftConfig
{
    public override string PeftType => "LOHA";

    public int R { get; init; } = 8;
    public double Alpha { get; init; } = 8;
    public bool InitWeights { get; init; } = true;
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = new Dictionary<string, double>();

    public override PeftTuner CreateTuner(string adapterName) => new LoHaTuner(this, adapterName);

    public override void Validate()
    {
        base.Validate();
        if (R <= 0) throw new BadInputException($"r must be a positive integer, got {R}");
    }

    public (int Rank, double Alpha) ForModule(string path) =>
        (LoraConfig.PatternValue(RankPattern, path) ?? R, LoraConfig.PatternValue(AlphaPattern, path) ?? Alpha);

    public override JsonObject ToJson()
    {
        var json = base.ToJson();
        json["r"] = R;
        json["alpha"] = Alpha;
        json["rank_dropout"] = 0.0;
        json["module_dropout"] = 0.0;
        json["init_weights"] = InitWeights;
        json["use_effective_conv2d"] = false;
        json["rank_pattern"] = new JsonObject(RankPattern.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        json["alpha_pattern"] = new JsonObject(AlphaPattern.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        return json;
    }

    public static LoHaConfig Read(ConfigJson json)
    {
        var config = WithCommon(new LoHaConfig
        {
            R = json.Get("r", 8),
            Alpha = json.Get("alpha", 8.0),
            InitWeights = json.Get("init_weights", true),
            RankPattern = json.Get<Dictionary<string, int>?>("rank_pattern", null) ?? new(),
            AlphaPattern = json.Get<Dictionary<string, double>?>("alpha_pattern", null) ?? new(),
        }, json);
        if (json.Get("rank_dropout", 0.0) != 0 || json.Get("module_dropout", 0.0) != 0)
            Log.Warning($"{json.File}: LoHa rank_dropout/module_dropout are not implemented by VlPeft and are ignored");
        json.Node("use_effective_conv2d");
        return config;
    }
}
