using TorchSharp;
using VlPeft.Tensors;

namespace VlPeft.Tests.Tensors;

public class TensorStatisticsTests
{
    [Fact]
    public void Finite_values_give_the_textbook_statistics_and_bad_values_are_counted()
    {
        // Finite values 1, 2, 3, 6: mean 3, sample variance ((4 + 1 + 0 + 9) / 3) = 14/3.
        using var t = torch.tensor(new float[] { 1, float.NaN, 2, float.PositiveInfinity, 3, float.NegativeInfinity, 6 });
        var s = TensorStatistics.Compute(t);
        Assert.Equal(1, s.Min);
        Assert.Equal(6, s.Max);
        Assert.Equal(3, s.Mean);
        Assert.Equal(Math.Sqrt(14.0 / 3.0), s.Std!.Value, 12);
        Assert.Equal(1, s.NaN);
        Assert.Equal(2, s.Inf);
    }

    [Fact]
    public void All_nan_gives_null_statistics()
    {
        using var t = torch.full(3, float.NaN);
        var s = TensorStatistics.Compute(t);
        Assert.Null(s.Min);
        Assert.Null(s.Std);
        Assert.Equal(3, s.NaN);
    }
}
