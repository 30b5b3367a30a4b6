using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Nn;

/// <summary>Head reshaping and scaled dot-product attention shared by the models.</summary>
public static class Attention
{
    /// <summary>[B, T, H·D] → [B, H, T, D].</summary>
    public static Tensor SplitHeads(Tensor x, long heads) =>
        x.view(x.shape[0], x.shape[1], heads, x.shape[2] / heads).transpose(1, 2);

    /// <summary>[B, H, T, D] → [B, T, H·D].</summary>
    public static Tensor MergeHeads(Tensor x) =>
        x.transpose(1, 2).reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]);

    /// <summary>
    /// softmax(q·kᵀ·scale + mask)·v with dropout on the probabilities. TorchSharp's SDPA has no scale
    /// argument, so q is pre-multiplied when the scale differs from 1/√d (T5 uses 1).
    /// </summary>
    public static Tensor Scaled(Tensor q, Tensor k, Tensor v, Tensor? additiveMask, double scale, double dropout, bool training, bool causal = false)
    {
        double defaultScale = 1.0 / Math.Sqrt(q.shape[^1]);
        if (Math.Abs(scale - defaultScale) > 1e-12) q = q * (scale / defaultScale);
        return F.scaled_dot_product_attention(q, k, v, additiveMask, training ? dropout : 0, causal);
    }

    /// <summary>[B, T] mask of 1 (attend) / 0 (ignore) → additive [B, 1, 1, T] with the dtype's minimum, as HF.</summary>
    public static Tensor Additive(Tensor mask, ScalarType dtype)
    {
        var m = mask.to(dtype).unsqueeze(1).unsqueeze(2);
        return (1.0 - m) * MinValue(dtype);
    }

    /// <summary>The most negative finite value of a dtype (HF's torch.finfo(dtype).min).</summary>
    public static double MinValue(ScalarType dtype) => dtype switch
    {
        ScalarType.Float16 => -65504.0,
        ScalarType.BFloat16 => -3.3895313892515355e38,
        ScalarType.Float64 => double.MinValue,
        _ => float.MinValue,
    };
}
