using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>
/// One named adapter's contribution on one <see cref="Linear"/> (a LoRA pair, an AdaLoRA SVD
/// triplet, a LoHa product, …). The layer owns the base weight; the adapter owns its tensors,
/// registered in the layer's adapter containers under HF PEFT's names.
/// </summary>
public abstract class LinearAdapter
{
    protected LinearAdapter(string name, Linear layer)
    {
        Name = name;
        Layer = layer;
    }

    public string Name { get; }
    public Linear Layer { get; }

    /// <summary>
    /// Adapters stay fp32 over a bf16/fp16 base (HF autocast_adapter_dtype); fp64 bases keep fp64.
    /// </summary>
    protected static ScalarType AdapterDtype(Linear layer) =>
        layer.weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>Container kinds this adapter registered entries in (removed on detach).</summary>
    public abstract IReadOnlyList<string> ContainerKinds { get; }

    /// <summary>What to add to the base output W0·x + b0 for input <paramref name="x"/>.</summary>
    public abstract Tensor Forward(Tensor x, Tensor baseOutput);

    /// <summary>
    /// <paramref name="output"/> plus this adapter's contribution. Adapters may override it to
    /// fuse the addition into their last matmul, saving an activation-sized temporary.
    /// </summary>
    public virtual Tensor AddTo(Tensor output, Tensor x, Tensor baseOutput) => output + Forward(x, baseOutput);

    /// <summary>
    /// The layer's whole output (base included) when this adapter can compute it in one fused step as
    /// the only active adapter; null to use the ordinary base + contribution path.
    /// </summary>
    public virtual Tensor? FusedForward(Tensor x) => null;

    /// <summary>ΔW in nn.Linear orientation [out, in] (the layer transposes it for fan_in_fan_out weights).</summary>
    public abstract Tensor DeltaWeight();

    /// <summary>Δb added to the base bias on merge, if the adapter has one.</summary>
    public virtual Tensor? DeltaBias() => null;

    /// <summary>Folds the adapter into the layer's weight. Additive by default; DoRA overrides.</summary>
    public virtual void Merge(bool safe)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var delta = Layer.OrientLikeWeight(DeltaWeight()).to(Layer.weight.dtype);
        Layer.WriteWeight(Layer.weight + delta, safe, Name);
        if (DeltaBias() is Tensor db && Layer.bias is not null)
            Layer.WriteBias(Layer.bias + db.to(Layer.bias.dtype), safe, Name);
    }

    /// <summary>Takes a merged adapter back out of the layer's weight.</summary>
    public virtual void Unmerge()
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var delta = Layer.OrientLikeWeight(DeltaWeight()).to(Layer.weight.dtype);
        Layer.WriteWeight(Layer.weight - delta, safe: false, Name);
        if (DeltaBias() is Tensor db && Layer.bias is not null)
            Layer.WriteBias(Layer.bias - db.to(Layer.bias.dtype), safe: false, Name);
    }
}
