using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>
/// BERT's self-attention under its HF names (<c>query</c>, <c>key</c>, <c>value</c>), shared by ViT and RoBERTa:
/// scale 1/√d_head, an optional additive mask, no dropout at evaluation.
/// </summary>
public sealed class BertSelfAttention : nn.Module
{
    readonly Linear query, key, value;
    readonly int heads;

    public BertSelfAttention(string name, long hidden, int heads, bool bias, Device? device) : base(name)
    {
        query = new Linear(hidden, hidden, bias, device: device);
        key = new Linear(hidden, hidden, bias, device: device);
        value = new Linear(hidden, hidden, bias, device: device);
        this.heads = heads;
        RegisterComponents();
    }

    /// <param name="additiveMask">[B, 1, 1, T] (0 / dtype minimum) or null.</param>
    public Tensor Run(Tensor h, Tensor? additiveMask)
    {
        using var scope = torch.NewDisposeScope();
        var q = Attention.SplitHeads(query.call(h), heads);
        var k = Attention.SplitHeads(key.call(h), heads);
        var v = Attention.SplitHeads(value.call(h), heads);
        var context = Attention.Scaled(q, k, v, additiveMask?.to(q.dtype), 1 / Math.Sqrt(q.shape[^1]), 0, training);
        return Attention.MergeHeads(context).MoveToOuterDisposeScope();
    }
}

/// <summary>A module holding one <c>dense</c> linear (BERT's intermediate, output, attention.output).</summary>
public sealed class DenseLayer : nn.Module<Tensor, Tensor>
{
    readonly Linear dense;

    public DenseLayer(string name, long input, long output, Device? device) : base(name)
    {
        dense = new Linear(input, output, device: device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => dense.call(x);
}
