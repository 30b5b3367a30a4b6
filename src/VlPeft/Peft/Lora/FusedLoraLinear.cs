using TorchSharp;
using VlPeft.Nn.Quantization;
using static TorchSharp.torch;

namespace VlPeft.Peft.Lora;

/// <summary>
/// y = x·W0ᵀ + b0 + s·(x·Aᵀ)·Bᵀ as one autograd node for a frozen base. The LoRA work is
/// memory-bound at small r, so what counts is the number of activation-sized passes
/// (docs/benchmarks.md). With many rows (N ≥ in + out) the node multiplies by the merged weight
/// W' = W0 + s·B·A (costs in·out·r, recomputed in backward rather than kept, so training memory
/// does not grow by a weight copy per layer): the LoRA terms then add no pass to the forward, and
/// dx = dy·W' is one matmul. With few rows it adds the LoRA term into the output buffer (addmm_)
/// instead. Gradients: dA = (s·dy·B)ᵀ·x, dB = s·dyᵀ·(x·Aᵀ); none for W0, b0.
/// A half-precision base (bf16/fp16 x, W0) under fp32 LoRA factors computes what the unfused layer does (HF PEFT casts
/// x to the adapter dtype, and the update back): base matmul in half, LoRA in fp32 from x cast once, the update rounded
/// to half and added. Backward reuses that cast and h = x·Aᵀ (no pass over x but dA's), and dx is dy·W0 in half plus
/// the LoRA term rounded to half, as autograd through the casts gives it — one node instead of five.
/// A quantized base (<see cref="QuantizedWeight"/>, passed after the scaling; W0 is then its placeholder) runs its
/// tiled matmuls for x·W0ᵀ and dy·W0 and is never merged; the LoRA terms are as above.
/// </summary>
sealed class FusedLoraLinear : torch.autograd.SingleTensorFunction<FusedLoraLinear>
{
    public override string Name => "FusedLoraLinear";

    static bool UseMergedWeight(long rows, Tensor w) => rows >= w.shape[0] + w.shape[1];

    static Tensor MergedWeight(Tensor w, Tensor a, Tensor bUp, double s) => torch.addmm(w, bUp, a, 1, (float)s);

    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, w, b, a, bUp, scaling) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor?)vars[2], (Tensor)vars[3], (Tensor)vars[4], (double)vars[5]);
        var quantized = (QuantizedWeight?)vars[6];
        ctx.save_data("quantized", quantized!);
        var x2 = x.reshape(-1, x.shape[^1]);
        Tensor BaseOutput() => quantized is not null ? QuantizedLinearFunction.Forward(x2, quantized, b)
            : b is null ? torch.matmul(x2, w.t()) : torch.addmm(b, x2, w.t(), 1, 1);
        Tensor y;
        if (x.dtype != a.dtype)
        {
            // Mixed precision: keep the input cast once (as HF PEFT's autograd does) and the r-wide h, so backward casts nothing of x.
            var xLora = x2.to(a.dtype);
            var h = torch.matmul(xLora, a.t());
            y = BaseOutput();
            using (var delta = torch.matmul(h * scaling, bUp.t())) y.add_(delta.to(y.dtype));
            ctx.save_for_backward(new List<Tensor> { xLora, w, a, bUp, h });
            ctx.save_data("scaling", scaling);
            ctx.save_data("inputShape", x.shape);
            ctx.save_data("inputNeedsGrad", x.requires_grad);
            return y.view(x.shape[..^1].Append(w.shape[0]).ToArray());
        }
        if (quantized is null && UseMergedWeight(x2.shape[0], w))
        {
            var merged = MergedWeight(w, a, bUp, scaling);
            y = b is null ? torch.matmul(x2, merged.t()) : torch.addmm(b, x2, merged.t(), 1, 1);
        }
        else
        {
            y = BaseOutput();
            y.addmm_(torch.matmul(x2, a.t()), bUp.t(), 1, (float)scaling);
        }
        ctx.save_for_backward(new List<Tensor> { x, w, a, bUp });
        ctx.save_data("scaling", scaling);
        return y.view(x.shape[..^1].Append(w.shape[0]).ToArray());
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad)
    {
        var saved = ctx.get_saved_variables();
        var (x, w, a, bUp) = (saved[0], saved[1], saved[2], saved[3]);
        double s = (double)ctx.get_data("scaling");
        var quantized = (QuantizedWeight?)ctx.get_data("quantized");
        if (saved.Count == 5) return MixedBackward(ctx, saved, s, grad, quantized);
        var dy = grad.reshape(-1, grad.shape[^1]);
        var x2 = x.reshape(-1, x.shape[^1]);
        var h = torch.matmul(x2, a.t());                         // [N, r]
        // Both skinny products are written so the [N, ·] operand is read row-major with the r-wide
        // factor as a transposed [r, ·] matrix: 2–3× faster on CPU BLAS than dy·B and dyᵀ·h.
        var gh = torch.matmul(dy, bUp.t().contiguous().t()) * s; // [N, r]
        var dB = torch.matmul(h.t(), dy).t() * s;                // [out, r]
        var dA = torch.matmul(gh.t(), x2);                       // [r, in]
        Tensor? dx = null;
        if (x.requires_grad)
        {
            if (quantized is null && UseMergedWeight(x2.shape[0], w))
                dx = torch.matmul(dy, MergedWeight(w, a, bUp, s));
            else
            {
                dx = BaseInputGradient(dy, w, quantized);        // [N, in]
                dx.addmm_(gh, a, 1, 1);
            }
            dx = dx.view(x.shape);
        }
        return new List<Tensor> { dx!, null!, null!, dA, dB, null!, null! };
    }

    /// <summary>Backward for a half-precision base under LoRA factors of another dtype: the LoRA products in the factors' dtype.</summary>
    static List<Tensor> MixedBackward(torch.autograd.AutogradContext ctx, List<Tensor> saved, double s, Tensor grad, QuantizedWeight? quantized)
    {
        var (xLora, w, a, bUp, h) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        var dy = grad.reshape(-1, grad.shape[^1]);
        var dyLora = dy.to(a.dtype);
        var gh = torch.matmul(dyLora, bUp.t().contiguous().t()) * s;   // [N, r]
        var dB = torch.matmul(h.t(), dyLora).t() * s;
        var dA = torch.matmul(gh.t(), xLora);
        Tensor? dx = null;
        if ((bool)ctx.get_data("inputNeedsGrad"))
            dx = BaseInputGradient(dy, w, quantized).add_(torch.matmul(gh, a).to(dy.dtype)).view((long[])ctx.get_data("inputShape"));
        return new List<Tensor> { dx!, null!, null!, dA, dB, null!, null! };
    }

    static Tensor BaseInputGradient(Tensor dy, Tensor w, QuantizedWeight? quantized) =>
        quantized is not null ? QuantizedLinearFunction.InputGradient(dy, quantized) : torch.matmul(dy, w);
}
