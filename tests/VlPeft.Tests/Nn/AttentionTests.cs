using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;

namespace VlPeft.Tests.Nn;

public class AttentionTests
{
    /// <summary>softmax(q·kᵀ·scale + mask)·v by loops over float64, with a causal mask when asked (key j visible to query i when j ≤ i).</summary>
    static double[,,,] Reference(Tensor q, Tensor k, Tensor v, Tensor? mask, double scale, bool causal)
    {
        var (Q, K, V) = (q.to(ScalarType.Float64), k.to(ScalarType.Float64), v.to(ScalarType.Float64));
        var M = mask?.to(ScalarType.Float64);
        long b = q.shape[0], h = q.shape[1], tq = q.shape[2], tk = k.shape[2], d = q.shape[3];
        var result = new double[b, h, tq, d];
        for (long i = 0; i < b; i++)
        for (long j = 0; j < h; j++)
        for (long x = 0; x < tq; x++)
        {
            var scores = new double[tk];
            for (long y = 0; y < tk; y++)
            {
                double s = 0;
                for (long z = 0; z < d; z++) s += Q[i, j, x, z].item<double>() * K[i, j, y, z].item<double>();
                scores[y] = s * scale + (M is null ? 0 : M[i, 0, 0, y].item<double>()) + (causal && y > x ? double.NegativeInfinity : 0);
            }
            double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
            for (long z = 0; z < d; z++)
                result[i, j, x, z] = Enumerable.Range(0, (int)tk).Sum(y => Math.Exp(scores[y] - max) / sum * V[i, j, y, z].item<double>());
        }
        return result;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Half_precision_attention_matches_the_formula(bool causal)
    {
        torch.manual_seed(8);
        using var q = torch.randn(2, 2, 3, 4).to(ScalarType.BFloat16);
        using var k = torch.randn(2, 2, 5, 4).to(ScalarType.BFloat16);
        using var v = torch.randn(2, 2, 5, 4).to(ScalarType.BFloat16);
        using var mask = Attention.Additive(torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }).view(2, 5), ScalarType.BFloat16);
        using var result = Attention.Scaled(q, k, v, mask, 0.5, dropout: 0, training: false, causal: causal);
        Assert.Equal(ScalarType.BFloat16, result.dtype);
        var expected = Reference(q, k, v, mask, 0.5, causal);
        var actual = result.to(ScalarType.Float64);
        for (int i = 0; i < 2; i++) for (int j = 0; j < 2; j++) for (int x = 0; x < 3; x++) for (int z = 0; z < 4; z++)
            Assert.True(Math.Abs(expected[i, j, x, z] - actual[i, j, x, z].item<double>()) < 0.03, $"[{i},{j},{x},{z}]");
    }
}
