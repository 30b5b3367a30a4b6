using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Tensors;

/// <summary>
/// Summary statistics of a tensor. Min, max, mean and std are over the finite values only
/// (NaN and ±Inf are counted separately), so one bad value does not hide the rest; std is the
/// sample standard deviation (n − 1), as <c>torch.std</c>. They are null when there are too few
/// finite values (none for min/max/mean, fewer than two for std).
/// </summary>
public sealed record TensorStatistics(double? Min, double? Max, double? Mean, double? Std, long NaN, long Inf)
{
    const long ChunkElements = 1 << 24;

    public static TensorStatistics Compute(Tensor tensor)
    {
        using var scope = torch.NewDisposeScope();
        var flat = tensor.detach().reshape(-1);
        long nan = 0, inf = 0, count = 0;
        double min = double.PositiveInfinity, max = double.NegativeInfinity, sum = 0;
        // Pass 1: counts, extremes, sum. Chunks keep the float64 copy small for huge tensors.
        ForEachFiniteChunk(flat, (finite, chunkNan, chunkInf) =>
        {
            nan += chunkNan;
            inf += chunkInf;
            count += finite.NumberOfElements;
            if (finite.NumberOfElements == 0) return;
            min = Math.Min(min, finite.min().item<double>());
            max = Math.Max(max, finite.max().item<double>());
            sum += finite.sum().item<double>();
        });
        if (count == 0) return new TensorStatistics(null, null, null, null, nan, inf);
        double mean = sum / count;
        // Pass 2: squared deviations from the mean (two-pass is stable where E[x²] − E[x]² is not).
        double squares = 0;
        ForEachFiniteChunk(flat, (finite, _, _) =>
        {
            if (finite.NumberOfElements > 0) squares += finite.sub(mean).square().sum().item<double>();
        });
        double? std = count > 1 ? Math.Sqrt(squares / (count - 1)) : null;
        return new TensorStatistics(min, max, mean, std, nan, inf);
    }

    static void ForEachFiniteChunk(Tensor flat, Action<Tensor, long, long> visit)
    {
        long total = flat.NumberOfElements;
        for (long start = 0; start < total; start += ChunkElements)
        {
            using var scope = torch.NewDisposeScope();
            var chunk = flat.narrow(0, start, Math.Min(ChunkElements, total - start)).to(ScalarType.Float64);
            long nan = chunk.isnan().sum().item<long>();
            long inf = chunk.isinf().sum().item<long>();
            var finite = nan + inf == 0 ? chunk : chunk.masked_select(chunk.isfinite());
            visit(finite, nan, inf);
        }
    }
}
