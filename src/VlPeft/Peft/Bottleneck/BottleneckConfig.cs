using System.Text.Json.Nodes;

namespace VlPeft.Peft.Bottleneck;

/// <summary>
/// The Bottleneck Adapter (arXiv 2407.17813) and LaVIN's RepAdapter with router (peft-methods.md §7–8), one
/// method at adapter sites: g(Z) = Z + s·ψ_u(dropout(ψ_d(Z))), ψ_d dense d → adapter_dim with bias, ψ_u
/// group-wise adapter_dim → d in <see cref="Groups"/> groups, no nonlinearity. With <see cref="Router"/>, two
/// up-projections are mixed by w = softmax((W_r·x_0 + b_r)/t), x_0 the sequence's first token (LaVIN's MMA).
/// Targets are site names (<c>adapter_before_attention</c>, <c>adapter_before_ffn</c>).
/// </summary>
public sealed record BottleneckConfig : PeftConfig
{
    public const string Type = "BOTTLENECK";
    public override string PeftType => Type;

    /// <summary>The bottleneck width h (paper: 16; LaVIN: 8).</summary>
    public int AdapterDim { get; init; } = 16;
    /// <summary>k, the groups of the up-projection (paper and LaVIN: 2).</summary>
    public int Groups { get; init; } = 2;
    public double Scale { get; init; } = 1.0;
    /// <summary>Dropout on the down-projection's output (LaVIN: 0.1).</summary>
    public double Dropout { get; init; } = 0.1;
    /// <summary>LaVIN's router over two up-projections (the Bottleneck Adapter paper's "weight scales" ablation).</summary>
    public bool Router { get; init; }
    /// <summary>The router's softmax temperature t (LaVIN: 10 for 7B, 5 for 13B).</summary>
    public double Temperature { get; init; } = 10.0;
    /// <summary>
    /// Sites under these module paths route like LaVIN's CLIP code, whose sequence-first tensors make x[:, 0]
    /// mean "image 0 of the batch at every position": the weights come per position from the batch's first
    /// image. Only to reproduce LaVIN's numbers; the default routes each sequence by its own first token.
    /// </summary>
    public IReadOnlyList<string> LavinRouterQuirkModules { get; init; } = Array.Empty<string>();

    public override PeftTuner CreateTuner(string adapterName) => new BottleneckTuner(this, adapterName);

    public override void Validate()
    {
        base.Validate();
        if (AdapterDim < 1) throw new BadInputException($"adapter_dim must be a positive integer, got {AdapterDim}");
        if (Groups < 1 || AdapterDim % Groups != 0) throw new BadInputException($"groups must be a positive divisor of adapter_dim {AdapterDim}, got {Groups}");
        if (!double.IsFinite(Scale)) throw new BadInputException($"scale must be a finite number, got {Scale}");
        if (!(Dropout >= 0 && Dropout < 1)) throw new BadInputException($"dropout must be in [0, 1), got {Dropout}");
        if (!(Temperature > 0 && double.IsFinite(Temperature))) throw new BadInputException($"temperature must be a finite number > 0, got {Temperature}");
        if (LavinRouterQuirkModules.Count > 0 && !Router) throw new BadInputException("lavin_router_quirk_modules needs router: true");
    }

    /// <summary>Why this adapter cannot be folded into the next linear layers, or null.</summary>
    public string? FoldRefusal => Router
        ? "its router weights depend on each input's first token, so the adapter is not one fixed linear map (only router-free bottleneck adapters fold into the following layers)"
        : null;

    public override JsonObject ToJson()
    {
        var json = base.ToJson();
        json["adapter_dim"] = AdapterDim;
        json["groups"] = Groups;
        json["scale"] = Scale;
        json["dropout"] = Dropout;
        json["router"] = Router;
        json["temperature"] = Temperature;
        json["lavin_router_quirk_modules"] = new JsonArray(LavinRouterQuirkModules.Select(m => (JsonNode)m).ToArray());
        return json;
    }

    public static BottleneckConfig Read(ConfigJson json) => WithCommon(new BottleneckConfig
    {
        AdapterDim = json.Get("adapter_dim", 16),
        Groups = json.Get("groups", 2),
        Scale = json.Get("scale", 1.0),
        Dropout = json.Get("dropout", 0.1),
        Router = json.Get("router", false),
        Temperature = json.Get("temperature", 10.0),
        LavinRouterQuirkModules = json.Get<List<string>?>("lavin_router_quirk_modules", null) ?? new List<string>(),
    }, json);
}
