using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Tests.Peft;

static class TensorAssert
{
    public static void Close(Tensor expected, Tensor actual, double tol = 1e-5)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(torch.allclose(expected.to(ScalarType.Float64), actual.to(ScalarType.Float64), rtol: 0, atol: tol),
            $"max diff {(expected.to(ScalarType.Float64) - actual.to(ScalarType.Float64)).abs().max().item<double>()}");
    }
}
