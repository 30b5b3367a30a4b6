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
        if ((q.dtype == ScalarType.BFloat16 || q.dtype == ScalarType.Float16) && !SdpaForHalfPrecision) return Explicit(q, k, v, additiveMask, scale, dropout, training, causal);
        double defaultScale = 1.0 / Math.Sqrt(q.shape[^1]);
        if (Math.Abs(scale - defaultScale) > 1e-12) q = q * (scale / defaultScale);
        return F.scaled_dot_product_attention(q, k, v, additiveMask, training ? dropout : 0, causal);
    }

    /// <summary>VLPEFT_SDPA=1: half precision through libtorch's SDPA too (read once: this is on every attention call).</summary>
    static readonly bool SdpaForHalfPrecision = Environment.GetEnvironmentVariable("VLPEFT_SDPA") == "1";

    /// <summary>The same as explicit products (HF's eager attention), the softmax in fp32 for half-precision scores.</summary>
    static Tensor Explicit(Tensor q, Tensor k, Tensor v, Tensor? additiveMask, double scale, double dropout, bool training, bool causal)
    {
        using var scope = torch.NewDisposeScope();
        var scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale);
        if (additiveMask is not null) scores = scores.add_(additiveMask);
        // SDPA's is_causal: query i sees keys j ≤ i (top-left aligned).
        if (causal) scores = scores.masked_fill_(torch.ones(q.shape[^2], k.shape[^2], ScalarType.Bool, q.device).triu_(1), double.NegativeInfinity);
        var probs = F.softmax(scores, -1, ScalarType.Float32).to(q.dtype);
        if (training && dropout > 0) probs = F.dropout(probs, dropout, training: true);
        return torch.matmul(probs, v).MoveToOuterDisposeScope();
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
