using TorchSharp;
using VlPeft.Peft.Lora;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Tests.Nn;

public class LinearTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_non_contiguous_sequence_slice_gives_the_contiguous_result_and_gradient(bool fanInFanOut)
    {
        // The fold to 2-D for strided inputs (Linear.Base) must not change values or the gradient reaching the input.
        torch.manual_seed(61);
        using var layer = new Linear(6, 5, fanInFanOut: fanInFanOut, dtype: ScalarType.Float64);
        foreach (var p in layer.parameters()) p.requires_grad = false;
        layer.Attach(new LoraAdapter("default", layer, rank: 2, alpha: 4, dropout: 0, useRslora: false));
        using (torch.no_grad()) foreach (var (name, p) in layer.named_parameters().Where(p => p.name.Contains("lora_B"))) p.normal_();
        using var full = torch.randn(3, 7, 6, dtype: ScalarType.Float64).requires_grad_(true);
        var slice = full[.., 2..5];
        Assert.False(slice.is_contiguous());
        var y = layer.call(slice);
        using var weights = torch.randn(3, 3, 5, dtype: ScalarType.Float64);
        (y * weights).sum().backward();
        var gradStrided = full.grad!.clone();
        full.grad!.zero_();

        var expected = layer.call(slice.contiguous());
        (expected * weights).sum().backward();
        TensorAssert.Close(expected, y, 1e-12);
        TensorAssert.Close(full.grad!, gradStrided, 1e-12);
        Assert.Equal(new long[] { 3, 3, 5 }, y.shape);
    }
}
