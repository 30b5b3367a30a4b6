using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>Where in a transformer block an adapter site sits (the places the papers put adapters).</summary>
public enum AdapterPlacement
{
    /// <summary>Pre-LN blocks: on the normed attention input, <c>h + attn(site(norm(h)))</c> (LaVIN, Bottleneck Adapter).</summary>
    BeforeAttention,
    /// <summary>Pre-LN blocks: on the normed FFN input, <c>h + ffn(site(norm(h)))</c>.</summary>
    BeforeFeedForward,
    /// <summary>Post-LN blocks: after the attention output dense, before residual + LayerNorm (Houlsby).</summary>
    AfterAttentionOutput,
    /// <summary>Post-LN blocks: after the FFN output dense, before residual + LayerNorm (Houlsby).</summary>
    AfterFeedForwardOutput,
    /// <summary>Pre-LN blocks: one adapter applied to the attention output and again to the MLP output, each before its residual add (GPT-2 in the routing paper).</summary>
    AfterAttentionAndFeedForwardOutput,
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
    readonly HashSet<string> folded = new();
    HashSet<string>? active;

    /// <param name="width">The hidden size of the states passing through (what an adapter here maps d → d).</param>
    public AdapterSite(AdapterPlacement placement, long width) : base(placement.ToString())
    {
        Placement = placement;
        Width = width;
        RegisterComponents();
    }

    public AdapterPlacement Placement { get; }
    public long Width { get; }
    public bool Disabled { get; set; }

    /// <summary>
    /// The linear layers that read this site's output and nothing else (q, k, v after the attention-input
    /// site; the FFN's input projections after the FFN-input site): an affine adapter here folds into them.
    /// Empty where the output goes elsewhere too (a residual), so nothing can fold.
    /// </summary>
    public IReadOnlyList<Linear> FoldTargets { get; private set; } = Array.Empty<Linear>();

    public AdapterSite FoldsInto(params Linear[] layers)
    {
        FoldTargets = layers;
        return this;
    }

    /// <summary>Marks an adapter as folded into <see cref="FoldTargets"/>: the site no longer applies it.</summary>
    public void MarkFolded(string name) => folded.Add(name);
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
        folded.Remove(name);
    }

    /// <summary>Null means every attached adapter is active.</summary>
    public void SetActive(IEnumerable<string>? names) => active = names?.ToHashSet();

    public override Tensor forward(Tensor hidden)
    {
        var result = hidden.alias(); // a module must not hand back its input object
        if (Disabled) return result;
        foreach (var (name, adapter) in adapters)
            if ((active is null || active.Contains(name)) && !folded.Contains(name))
                result = adapter.call(result);
        return result;
    }
}
