using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Peft.Lora;

/// <summary>
/// y = x·W0ᵀ + b0 + s·(x·Aᵀ)·Bᵀ as one autograd node for a frozen base, so the backward writes
/// dx = dy·W0 + (s·dy·B)·A into one buffer (addmm_) instead of summing two activation-sized
/// gradients; the LoRA work is memory-bound at small r, so fewer activation-sized passes is what
/// counts (docs/benchmarks.md). Gradients: dA = (s·dy·B)ᵀ·x, dB = s·dyᵀ·(x·Aᵀ); none for W0, b0.
/// </summary>
sealed class FusedLoraLinear : torch.autograd.SingleTensorFunction<FusedLoraLinear>
{
    public override string Name => "FusedLoraLinear";

    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, w, b, a, bUp, scaling) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor?)vars[2], (Tensor)vars[3], (Tensor)vars[4], (double)vars[5]);
        var x2 = x.reshape(-1, x.shape[^1]);
        var h = torch.matmul(x2, a.t());                                                   // [N, r]
        var y = b is null ? torch.matmul(x2, w.t()) : torch.addmm(b, x2, w.t(), 1, 1);     // [N, out]
        y.addmm_(h, bUp.t(), 1, (float)scaling);
        ctx.save_for_backward(new List<Tensor> { x, w, a, bUp, h });
        ctx.save_data("scaling", scaling);
        ctx.save_data("hasBias", b is not null);
        return y.view(x.shape[..^1].Append(w.shape[0]).ToArray());
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad)
    {
        var saved = ctx.get_saved_variables();
        var (x, w, a, bUp, h) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        double s = (double)ctx.get_data("scaling");
        var dy = grad.reshape(-1, grad.shape[^1]);
        var x2 = x.reshape(-1, x.shape[^1]);
        var gh = torch.matmul(dy, bUp) * s;                      // [N, r]
        var dB = torch.matmul(dy.t(), h) * s;                    // [out, r]
        var dA = torch.matmul(gh.t(), x2);                       // [r, in]
        Tensor? dx = null;
        if (x.requires_grad)
        {
            dx = torch.matmul(dy, w);                            // [N, in]
            dx.addmm_(gh, a, 1, 1);
            dx = dx.view(x.shape);
        }
        return new List<Tensor> { dx!, null!, null!, dA, dB, null! };
    }
}
