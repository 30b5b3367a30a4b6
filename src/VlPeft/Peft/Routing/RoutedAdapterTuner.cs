using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;

namespace VlPeft.Peft.Routing;

/// <summary>Attaches a <see cref="RoutedAdapter"/> at each selected site. Never merges: the adapter has a nonlinearity.</summary>
public sealed class RoutedAdapterTuner : PeftTuner
{
    public RoutedAdapterTuner(RoutedAdapterConfig config, string adapterName) : base(config, adapterName) { }

    RoutedAdapterConfig Settings => (RoutedAdapterConfig)Config;

    public override TargetKind TargetKind => TargetKind.Site;

    public override nn.Module<Tensor, Tensor> CreateSiteAdapter(string path, AdapterSite site, long width) => new RoutedAdapter(width, Settings);

    public override string? MergeRefusal =>
        $"a routed adapter applies {Settings.Activation} inside its bottleneck{(Settings.Function == RoutingFunction.None ? "" : $" and routes with each input's visual feature ({Settings.Routing})")}, so it is not a linear map that could be folded into the weights";
}
