using TorchSharp;
using VlPeft.Peft.Routing;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Routing;

/// <summary>Each routing function against its formula (peft-methods.md §9.2) written as loops over numbers.</summary>
public class RoutingFunctionTests
{
    const int B = 2, L = 4, K = 3;

    static double[,,] Values(Tensor t)
    {
        var flat = t.to(ScalarType.Float64).data<double>().ToArray();
        var result = new double[t.shape[0], t.shape[1], t.shape[2]];
        Buffer.BlockCopy(flat, 0, result, 0, flat.Length * sizeof(double));
        return result;
    }

    /// <summary>z[b, l, j] for one function, from sums over indices.</summary>
    static double Expected(string f, double[,,] at, double[,,] av, int b, int l, int j)
    {
        int nv = av.GetLength(1);
        double Relu(double x) => Math.Max(0, x);
        double Dot(Func<int, double> x, Func<int, double> y) => Enumerable.Range(0, K).Sum(i => x(i) * y(i));
        return f switch
        {
            "add" => at[b, l, j] + av[b, 0, j],
            "mul" => at[b, l, j] * av[b, 0, j],
            "mul_expand" => Enumerable.Range(0, K).Sum(i => at[b, l, i]) * av[b, 0, j],
            "xt_xvT_xv" => Enumerable.Range(0, nv).Sum(n => Dot(i => at[b, l, i], i => av[b, n, i]) * av[b, n, j]),
            "xt_xvT_xv_relu" => Enumerable.Range(0, nv).Sum(n => Dot(i => Relu(at[b, l, i]), i => Relu(av[b, n, i])) * av[b, n, j]),
            "xt_xtT_xv" => Enumerable.Range(0, L).Sum(m => Dot(i => at[b, l, i], i => at[b, m, i])) * av[b, 0, j],
            _ => throw new ArgumentException(f),
        };
    }

    [Theory]
    [InlineData("add", 1)]
    [InlineData("mul", 1)]
    [InlineData("mul_expand", 1)]
    [InlineData("xt_xvT_xv", 1)]
    [InlineData("xt_xvT_xv", 3)]
    [InlineData("xt_xvT_xv_relu", 1)]
    [InlineData("xt_xvT_xv_relu", 3)]
    [InlineData("xt_xtT_xv", 1)]
    public void Route_equals_the_formula(string name, int visualTokens)
    {
        torch.manual_seed(11);
        using var at = torch.randn(B, L, K, dtype: ScalarType.Float64);
        using var av = torch.randn(B, visualTokens, K, dtype: ScalarType.Float64);
        using var z = RoutingFunctions.Route(RoutingFunctions.Parse(name), at, av);
        Assert.Equal(new long[] { B, L, K }, z.shape);
        var got = Values(z);
        var (t, v) = (Values(at), Values(av));
        for (int b = 0; b < B; b++)
            for (int l = 0; l < L; l++)
                for (int j = 0; j < K; j++)
                    Assert.Equal(Expected(name, t, v, b, l, j), got[b, l, j], 10);
    }

    [Theory]
    [InlineData("add")]
    [InlineData("mul")]
    [InlineData("mul_expand")]
    [InlineData("xt_xtT_xv")]
    public void Single_token_functions_refuse_several_visual_tokens(string name)
    {
        using var at = torch.randn(B, L, K);
        using var av = torch.randn(B, 3, K);
        var error = Assert.Throws<BadInputException>(() => RoutingFunctions.Route(RoutingFunctions.Parse(name), at, av));
        Assert.Contains("one visual token", error.Message);
        Assert.Contains("3", error.Message);
    }

    [Fact]
    public void Several_visual_tokens_use_a_true_transpose_not_the_reference_reshape()
    {
        // a_v = [[1, 0], [0, 2], [3, 1]] (N_v = 3, k = 2), a_t = [1, 1]: a_t·a_vᵀ = [1, 2, 4], ·a_v = [1 + 12, 4 + 4] = [13, 8].
        using var av = torch.tensor(new double[] { 1, 0, 0, 2, 3, 1 }).view(1, 3, 2);
        using var at = torch.tensor(new double[] { 1, 1 }).view(1, 1, 2);
        TensorAssert.Close(torch.tensor(new double[] { 13, 8 }).view(1, 1, 2), RoutingFunctions.Route(RoutingFunction.XtXvTXv, at, av));
        // The reference code's reshape(B, k, N_v) of a_v would read [[1, 0, 0], [2, 3, 1]]: a different product.
        using var reshaped = at.matmul(av.reshape(1, 2, 3)).matmul(av);
        Assert.False(torch.allclose(reshaped, RoutingFunctions.Route(RoutingFunction.XtXvTXv, at, av)));
    }

    [Fact]
    public void Names_round_trip_and_vllora_is_an_alias()
    {
        foreach (var name in RoutingFunctions.Names) Assert.Equal(name, RoutingFunctions.Name(RoutingFunctions.Parse(name)));
        Assert.Equal(RoutingFunction.XtXvTXv, RoutingFunctions.Parse("vllora"));
        var error = Assert.Throws<BadInputException>(() => RoutingFunctions.Parse("concat"));
        Assert.Contains("xt_xvT_xv", error.Message);
    }
}
