using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;

namespace VlPeft.Peft.Bottleneck;

/// <summary>
/// Attaches a <see cref="BottleneckAdapter"/> at each selected site. Merging re-parameterises router-free
/// adapters into the linear layers that read the site (RepAdapter's structural re-parameterisation).
/// </summary>
public sealed class BottleneckTuner : PeftTuner
{
    IReadOnlyList<AttachedTarget> targets = Array.Empty<AttachedTarget>();

    public BottleneckTuner(BottleneckConfig config, string adapterName) : base(config, adapterName) { }

    BottleneckConfig Settings => (BottleneckConfig)Config;

    public override TargetKind TargetKind => TargetKind.Site;

    public override nn.Module<Tensor, Tensor> CreateSiteAdapter(string path, AdapterSite site, long width) =>
        new BottleneckAdapter(width, Settings, Settings.LavinRouterQuirkModules.Any(m => path == m || path.StartsWith(m + ".", StringComparison.Ordinal)));

    public override void OnAttached(IReadOnlyList<AttachedTarget> attached) => targets = attached;

    public override string? MergeRefusal =>
        Settings.FoldRefusal
        ?? targets.Where(t => t.Site!.FoldTargets.Count == 0).Select(t =>
            $"the site '{t.Path}' ({t.Site!.Placement}) feeds a residual connection as well as the next layer, so there is no linear layer to fold it into").FirstOrDefault();

    /// <summary>y = W·g(x) + b with g(x) = x + M·x + c becomes one linear layer per reader of the site.</summary>
    public override void MergeSite(AttachedTarget target, bool safe)
    {
        var adapter = (BottleneckAdapter)target.SiteAdapter!;
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var (matrix, shift) = adapter.AffineMap();
        foreach (var layer in target.Site!.FoldTargets) layer.FoldInputMap(matrix, shift, safe, AdapterName);
        target.Site.MarkFolded(AdapterName);
    }
}
