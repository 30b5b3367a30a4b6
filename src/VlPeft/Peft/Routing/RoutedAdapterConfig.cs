using System.Text.Json.Nodes;

namespace VlPeft.Peft.Routing;

/// <summary>
/// The routing paper's adapter at adapter sites (peft-methods.md §9.4): h ↦ up(act(route(down·h, down·x_v))) (+ h
/// with <see cref="Residual"/>). Routing sits before the nonlinearity; "none" gives a plain Houlsby-style adapter.
/// Both linears keep nn.Linear's init (up is not zero-initialised, as in the reference code). Targets are site names.
/// </summary>
public sealed record RoutedAdapterConfig : PeftConfig
{
    public const string Type = "ROUTED_ADAPTER";
    public override string PeftType => Type;

    /// <summary>The bottleneck width (the paper's scripts: 128 for GPT-2, 64 for RoBERTa).</summary>
    public int AdapterDim { get; init; } = 64;
    public string Routing { get; init; } = "add";
    /// <summary>gelu_new for GPT-2, gelu for RoBERTa.</summary>
    public string Activation { get; init; } = "gelu";
    /// <summary>Adds the site's input to the adapter's output (GPT-2: yes; RoBERTa: only with --add_res, so the adapter replaces the dense output).</summary>
    public bool Residual { get; init; }

    public RoutingFunction Function => RoutingFunctions.Parse(Routing);

    public override PeftTuner CreateTuner(string adapterName) => new RoutedAdapterTuner(this, adapterName);

    public override void Validate()
    {
        base.Validate();
        if (AdapterDim < 1 || AdapterDim > 1 << 16) throw new BadInputException($"adapter_dim must be between 1 and 65,536, got {AdapterDim}");
        if (Function == RoutingFunction.CrossAttention) throw new BadInputException("routing 'cross_attention' is a LoRA baseline (ROUTED_LORA), not an adapter routing");
        _ = Nn.Activations.Get(Activation);
    }

    public override JsonObject ToJson()
    {
        var json = base.ToJson();
        json["adapter_dim"] = AdapterDim;
        json["routing"] = Routing;
        json["activation"] = Activation;
        json["residual"] = Residual;
        return json;
    }

    public static RoutedAdapterConfig Read(ConfigJson json) => WithCommon(new RoutedAdapterConfig
    {
        AdapterDim = json.Get("adapter_dim", 64),
        Routing = json.Get("routing", "add"),
        Activation = json.Get("activation", "gelu"),
        Residual = json.Get("residual", false),
    }, json);
}
