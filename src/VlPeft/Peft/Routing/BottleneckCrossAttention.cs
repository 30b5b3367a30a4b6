using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Peft.Routing;

/// <summary>
/// The routing paper's cross-attention baseline inside the bottleneck (its MergedLinearSplitAttn): queries from the
/// down-projected text a_t, keys and values from the down-projected visual tokens a_v, multi-head scaled dot-product
/// attention, an output linear, all k → k. With one pooled visual token the softmax has a single key, so the result
/// is a per-example visual term that does not depend on the text (as in the reference code).
/// </summary>
public sealed class BottleneckCrossAttention : nn.Module
{
    readonly AdapterWeight q, k, v, o;
    readonly int heads;

    public BottleneckCrossAttention(long width, int heads, ScalarType dtype, Device device) : base("BottleneckCrossAttention")
    {
        if (heads < 1 || width % heads != 0) throw new BadInputException($"the bottleneck width {width} must be divisible by cross_attention_heads {heads}");
        this.heads = heads;
        q = Linear(width, dtype, device);
        k = Linear(width, dtype, device);
        v = Linear(width, dtype, device);
        o = Linear(width, dtype, device);
        RegisterComponents();
    }

    // nn.Linear's default init, U(±1/√in) for weight and bias.
    static AdapterWeight Linear(long width, ScalarType dtype, Device device)
    {
        double bound = 1 / Math.Sqrt(width);
        using var _ = torch.no_grad();
        return new AdapterWeight(torch.empty(width, width, dtype: dtype, device: device).uniform_(-bound, bound),
            torch.empty(width, dtype: dtype, device: device).uniform_(-bound, bound));
    }

    /// <summary>a_t [B, L, k], a_v [B or 1, N_v, k] → [B, L, k].</summary>
    public Tensor Attend(Tensor at, Tensor av)
    {
        using var scope = torch.NewDisposeScope();
        var visual = av.expand(at.shape[0], av.shape[1], av.shape[2]);
        var query = Nn.Attention.SplitHeads(F.linear(at, q.weight, q.bias), heads);
        var key = Nn.Attention.SplitHeads(F.linear(visual, k.weight, k.bias), heads);
        var value = Nn.Attention.SplitHeads(F.linear(visual, v.weight, v.bias), heads);
        var context = F.scaled_dot_product_attention(query, key, value);
        return F.linear(Nn.Attention.MergeHeads(context), o.weight, o.bias).MoveToOuterDisposeScope();
    }
}
