using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn.Quantization;

/// <summary>
/// y = x·Wᵀ + b for a quantized frozen W: the weight is dequantized into x's dtype for the forward matmul and again
/// for dx = dy·W in backward, and kept neither time, so no full-precision copy outlives a matmul. No gradient for W or b.
/// </summary>
sealed class QuantizedLinearFunction : torch.autograd.SingleTensorFunction<QuantizedLinearFunction>
{
    public override string Name => "QuantizedLinear";

    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, weight, bias) = ((Tensor)vars[0], (QuantizedWeight)vars[1], (Tensor?)vars[2]);
        ctx.save_data("weight", weight);
        ctx.save_data("inputShape", x.shape);
        ctx.save_data("inputNeedsGrad", x.requires_grad);
        using var w = weight.Dequantize(x.dtype);
        var x2 = x.reshape(-1, x.shape[^1]);
        var y = bias is null ? torch.matmul(x2, w.t()) : torch.addmm(bias.to(x.dtype), x2, w.t(), 1, 1);
        return y.view(x.shape[..^1].Append(weight.OutFeatures).ToArray());
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad)
    {
        if (!(bool)ctx.get_data("inputNeedsGrad")) return new List<Tensor> { null!, null!, null! };   // no dx wanted: no second dequantization
        var weight = (QuantizedWeight)ctx.get_data("weight");
        using var w = weight.Dequantize(grad.dtype);
        var dx = torch.matmul(grad.reshape(-1, grad.shape[^1]), w).view((long[])ctx.get_data("inputShape"));
        return new List<Tensor> { dx, null!, null! };
    }
}
