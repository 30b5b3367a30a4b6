using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>Where in a transformer block an adapter site sits (the places the papers put adapters).</summary>
public enum AdapterPlacement
{
    BeforeAttention,
    BeforeFeedForward,
    AfterAttentionOutput,
    AfterFeedForwardOutput,
}

/// <summary>
/// A named identity point inside a block. Attached adapter modules (LaVIN's RepAdapter, the
/// Bottleneck Adapter, routed adapters) are applied in attach order to the hidden states passing
/// through; with none attached, or all disabled, the site returns its input unchanged. Attached
/// modules are registered under their adapter name, so their parameters read
/// <c>…&lt;site&gt;.&lt;adapter&gt;.&lt;param&gt;</c>.
/// </summary>
public sealed class AdapterSite : nn.Module<Tensor, Tensor>
{
    readonly List<(string Name, nn.Module<Tensor, Tensor> Adapter)> adapters = new();
    HashSet<string>? active;

    public AdapterSite(AdapterPlacement placement) : base(placement.ToString())
    {
        Placement = placement;
        RegisterComponents();
    }

    public AdapterPlacement Placement { get; }
    public bool Disabled { get; set; }
    public IReadOnlyList<string> AdapterNames => adapters.Select(a => a.Name).ToList();

    public void Attach(string name, nn.Module<Tensor, Tensor> adapter)
    {
        if (adapters.Any(a => a.Name == name)) throw new InvalidOperationException($"adapter '{name}' is already attached here");
        register_module(name, adapter);
        adapters.Add((name, adapter));
    }

    public void Detach(string name)
    {
        register_module(name, null!);
        adapters.RemoveAll(a => a.Name == name);
    }

    /// <summary>Null means every attached adapter is active.</summary>
    public void SetActive(IEnumerable<string>? names) => active = names?.ToHashSet();

    public override Tensor forward(Tensor hidden)
    {
        var result = hidden.alias(); // a module must not hand back its input object
        if (Disabled) return result;
        foreach (var (name, adapter) in adapters)
            if (active is null || active.Contains(name))
                result = adapter.call(result);
        return result;
    }
}
