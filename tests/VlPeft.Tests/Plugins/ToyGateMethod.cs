using System.Text.Json.Nodes;
using TorchSharp;
using VlPeft.Models;
using VlPeft.Nn;
using VlPeft.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Plugins;

/// <summary>
/// A PEFT method that exists only in the test project: at each selected adapter site,
/// y = x + gate ⊙ mean_i(x_v,i), the visual feature coming from the model's per-forward context.
/// It registers by peft_type and attaches at sites, with nothing changed in the library.
/// </summary>
sealed record ToyGateConfig : PeftConfig
{
    public const string Type = "TOY_GATE";
    public override string PeftType => Type;
    public double InitGate { get; init; }

    public override PeftTuner CreateTuner(string adapterName) => new ToyGateTuner(this, adapterName);

    public override JsonObject ToJson()
    {
        var json = base.ToJson();
        json["init_gate"] = InitGate;
        return json;
    }

    public static ToyGateConfig Read(ConfigJson json) => WithCommon(new ToyGateConfig { InitGate = json.Get("init_gate", 0.0) }, json);
}

sealed class ToyGateTuner : PeftTuner
{
    public ToyGateTuner(ToyGateConfig config, string adapterName) : base(config, adapterName) { }

    public override TargetKind TargetKind => TargetKind.Site;

    public override nn.Module<Tensor, Tensor> CreateSiteAdapter(string path, AdapterSite site, long width) =>
        new ToyGate(width, ((ToyGateConfig)Config).InitGate);
}

sealed class ToyGate : nn.Module<Tensor, Tensor>, IForwardContextConsumer
{
    readonly TorchSharp.Modules.Parameter gate;
    ForwardContext? context;

    public ToyGate(long width, double init) : base("ToyGate")
    {
        gate = new TorchSharp.Modules.Parameter(torch.full(width, init));
        RegisterComponents();
    }

    public IReadOnlyList<string> ContextNeeds => new[] { ForwardContext.VisualFeatures };
    public void Bind(ForwardContext context) => this.context = context;

    public override Tensor forward(Tensor x) =>
        x + gate * context!.Get(ForwardContext.VisualFeatures).mean(new long[] { 1 }, keepdim: true);   // [B, 1, D] broadcast over tokens
}
