using TorchSharp;
using VlPeft.Models;
using VlPeft.Nn.Quantization;
using VlPeft.Peft.Lora;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;
using TensorAssert = VlPeft.Tests.Peft.TensorAssert;

namespace VlPeft.Tests.Nn;

public class QuantizationTests
{
    /// <summary>The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).</summary>
    static double NormalQuantile(double p)
    {
        double[] a = { -3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00 };
        double[] b = { -5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01 };
        double[] c = { -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00 };
        double[] d = { 7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00 };
        double q, r;
        if (p < 0.02425)
        {
            q = Math.Sqrt(-2 * Math.Log(p));
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        if (p > 1 - 0.02425) return -NormalQuantile(1 - p);
        q = p - 0.5;
        r = q * q;
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }

    [Fact]
    public void Nf4_levels_are_the_normal_quantiles_of_the_QLoRA_construction()
    {
        // QLoRA (appendix E): 8 positive levels from quantiles at linspace(δ, 1/2, 9)[:-1], 7 negative at linspace(δ, 1/2, 8)[:-1],
        // δ = (1/2)(1/32 + 1/30)·… chosen as 0.9677083 in bitsandbytes' create_normal_map, an exact 0, scaled by the largest.
        const double offset = 0.9677083;
        var positive = Enumerable.Range(0, 8).Select(i => NormalQuantile(offset + (0.5 - offset) * i / 8.0));
        var negative = Enumerable.Range(0, 7).Select(i => -NormalQuantile(offset + (0.5 - offset) * i / 7.0));
        var levels = positive.Concat(negative).Append(0.0).OrderBy(v => v).ToArray();
        double max = levels.Max();
        Assert.Equal(16, Nf4Weight.Levels.Length);
        for (int i = 0; i < 16; i++) Assert.Equal(levels[i] / max, Nf4Weight.Levels[i], 6);
    }

    [Fact]
    public void Nf4_without_double_quantization_stores_the_nearest_level_times_the_block_absmax()
    {
        torch.manual_seed(3);
        using var w = torch.randn(3, 50);   // 150 values: blocks of 64, 64 and 22 (padded)
        using var q = Nf4Weight.Quantize(w, doubleQuant: false);
        var deq = q.Dequantize(ScalarType.Float32).data<float>().ToArray();
        var values = w.data<float>().ToArray();
        for (int block = 0; block * 64 < values.Length; block++)
        {
            var slice = values.Skip(block * 64).Take(64).ToArray();
            float absmax = slice.Max(Math.Abs);
            for (int i = 0; i < slice.Length; i++)
            {
                float nearest = Nf4Weight.Levels.OrderBy(l => Math.Abs(slice[i] / absmax - l)).First();
                Assert.Equal(nearest * absmax, deq[block * 64 + i], 5);
                // The round trip error is at most half the widest gap between levels ((1 − 0.7230)/2) times the absmax.
                Assert.True(Math.Abs(slice[i] - deq[block * 64 + i]) <= 0.13853 * absmax + 1e-6);
            }
        }
        Assert.Equal(75 + 3 * 4 + 64, q.Bytes);   // 150 nibbles, three fp32 absmax values, the code
    }

    [Fact]
    public void Large_weights_quantize_and_dequantize_in_chunks_to_the_whole_tensor_formula()
    {
        // 4,194,405 values: several 1 M-value chunks, ending in a partial block.
        torch.manual_seed(9);
        using var w = torch.randn(3, 1398135);
        using var q = Nf4Weight.Quantize(w, doubleQuant: false);
        using var deq = q.Dequantize(ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, deq.dtype);
        // Independently, over the whole tensor at once: nearest level by argmin of the distance to all 16.
        using var scope = torch.NewDisposeScope();
        var flat = w.reshape(-1);
        var padded = torch.cat(new[] { flat, torch.zeros(64 - flat.shape[0] % 64) }).view(-1, 64);
        var absmax = padded.abs().amax(new long[] { 1 }, keepdim: true);
        var levels = torch.tensor(Nf4Weight.Levels);
        var nearest = (padded / absmax).unsqueeze(-1).sub(levels).abs().argmin(-1);
        var expected = (levels.index_select(0, nearest.reshape(-1)).view(-1, 64) * absmax).reshape(-1)[..(int)flat.shape[0]];
        TensorAssert.Close(expected.to(ScalarType.BFloat16).to(ScalarType.Float32), deq.reshape(-1).to(ScalarType.Float32), 0);

        using var int8 = Int8Weight.Quantize(w);
        using var int8Deq = int8.Dequantize(ScalarType.Float32);
        var rowMax = w.abs().amax(new long[] { 1 }, keepdim: true);
        TensorAssert.Close((w * 127 / rowMax).round() * rowMax / 127, int8Deq, 1e-6);
    }

    [Fact]
    public void Nf4_packs_the_first_value_of_a_pair_in_the_high_nibble()
    {
        // Levels 0 (−1), 15 (1), 7 (0), 8 → bytes 0x0F, 0x78 as bitsandbytes stores them.
        using var w = torch.tensor(new float[] { -1f, 1f, 0f, Nf4Weight.Levels[8] }).view(1, 4);
        using var q = Nf4Weight.Quantize(w, doubleQuant: false);
        Assert.Equal(new byte[] { 0x0F, 0x78 }, q.Packed.data<byte>().ToArray());
    }

    [Fact]
    public void Double_quantization_stores_block_maxima_as_dynamic_map_codes_around_their_mean()
    {
        torch.manual_seed(4);
        using var w = torch.randn(40, 800) * torch.linspace(0.1, 3, 800);   // 500 blocks of varied scale: two nested blocks
        using var q = Nf4Weight.Quantize(w, doubleQuant: true);
        Assert.True(q.DoubleQuant);
        using var exact = Nf4Weight.Quantize(w, doubleQuant: false);
        var trueMax = exact.Absmax!.data<float>().ToArray();
        var codes = q.AbsmaxCodes!.data<byte>().ToArray();
        var nested = q.NestedAbsmax!.data<float>().ToArray();
        var map = q.NestedCode!.data<float>().ToArray();
        Assert.Equal(trueMax.Average(), q.Offset, 4);
        for (int i = 0; i < trueMax.Length; i++)
        {
            float scale = map[codes[i]] * nested[i / 256] + q.Offset;
            // The dynamic map's finest steps near ±1 are 0.9/64 apart: half of that, times the nested block's range.
            Assert.True(Math.Abs(scale - trueMax[i]) <= 0.0071 * nested[i / 256] + 1e-6, $"block {i}: {scale} vs {trueMax[i]}");
        }
        // Dequantization uses those reconstructed scales with the same 4-bit codes.
        var deq = q.Dequantize(ScalarType.Float32).reshape(-1).data<float>().ToArray();
        var deqExact = exact.Dequantize(ScalarType.Float32).reshape(-1).data<float>().ToArray();
        for (int i = 0; i < deq.Length; i += 97)
        {
            float scale = map[codes[i / 64]] * nested[i / 64 / 256] + q.Offset;
            Assert.Equal(deqExact[i] / trueMax[i / 64] * scale, deq[i], 4);
        }
        Assert.True(q.Bytes < exact.Bytes);
    }

    [Fact]
    public void The_dynamic_map_has_256_sorted_values_from_minus_0_993_to_1()
    {
        using var map = Nf4Weight.DynamicMap();
        var v = map.data<float>().ToArray();
        Assert.Equal(256, v.Length);
        Assert.True(v.Zip(v.Skip(1), (a, b) => a < b).All(x => x));
        Assert.Equal(-0.99296875f, v[0], 6);   // −(0.98594 + 1)/2, the last mean of the finest decade
        Assert.Equal(1f, v[^1]);
        Assert.Contains(0f, v);
        Assert.Equal(5.5e-7f, v.Where(x => x > 0).Min(), 9);   // the finest decade (10⁻⁶) has one mean, (0.1 + 1)/2
    }

    [Fact]
    public void Int8_stores_rounded_multiples_of_the_row_absmax_over_127()
    {
        torch.manual_seed(5);
        using var w = torch.randn(4, 9);
        using var q = Int8Weight.Quantize(w);
        var values = w.data<float>().ToArray();
        var deq = q.Dequantize(ScalarType.Float32).data<float>().ToArray();
        for (int row = 0; row < 4; row++)
        {
            float absmax = values.Skip(row * 9).Take(9).Max(Math.Abs);
            for (int j = 0; j < 9; j++)
            {
                float x = values[row * 9 + j];
                Assert.Equal(MathF.Round(127 * x / absmax) * absmax / 127, deq[row * 9 + j], 5);
                Assert.True(Math.Abs(x - deq[row * 9 + j]) <= absmax / 254 + 1e-6);
            }
        }
        Assert.Equal(36 + 16, q.Bytes);
    }

    [Theory]
    [InlineData("nf4")]
    [InlineData("int8")]
    public void A_quantized_layer_computes_with_its_dequantized_weight_and_passes_gradients_to_the_input(string format)
    {
        torch.manual_seed(6);
        using var layer = new Linear(70, 5);
        layer.weight.requires_grad = false;
        layer.bias!.requires_grad = false;
        layer.Quantize(format);
        Assert.Equal(format, layer.Quantized!.Format);
        using var dense = layer.Quantized.Dequantize(ScalarType.Float32);
        var x = torch.randn(2, 3, 70).requires_grad_(true);
        var y = layer.call(x);
        TensorAssert.Close(torch.nn.functional.linear(x, dense, layer.bias), y, 1e-5);
        using var upstream = torch.randn(2, 3, 5);
        (y * upstream).sum().backward();
        TensorAssert.Close(upstream.matmul(dense), x.grad!, 1e-5);
        Assert.Equal(new long[] { 5, 70 }, layer.weight.shape);   // shape and count queries still hold
    }

    [Fact]
    public void Lora_over_an_nf4_base_trains_and_merges_into_the_dequantized_weight()
    {
        torch.manual_seed(7);
        using var layer = new Linear(64, 6);
        layer.weight.requires_grad = false;
        layer.bias!.requires_grad = false;
        layer.Quantize("nf4");
        using var dense = layer.Quantized!.Dequantize(ScalarType.Float32);
        var lora = new LoraAdapter("default", layer, rank: 2, alpha: 4, dropout: 0, useRslora: false);
        layer.Attach(lora);
        using (torch.no_grad()) lora.B.weight.normal_(0, 0.5);
        using var x = torch.randn(3, 64);
        var expected = torch.nn.functional.linear(x, dense, layer.bias) + 2.0 * x.matmul(lora.A.weight.t()).matmul(lora.B.weight.t());
        var y = layer.call(x);
        TensorAssert.Close(expected, y, 1e-5);
        y.sum().backward();
        Assert.NotNull(lora.A.weight.grad);
        Assert.NotNull(lora.B.weight.grad);
        layer.Merge();
        Assert.Null(layer.Quantized);   // merged into the dequantized values, now a dense weight
        TensorAssert.Close(dense + 2.0 * lora.B.weight.matmul(lora.A.weight), layer.weight, 1e-5);
        TensorAssert.Close(expected, layer.call(x), 1e-5);
    }

    [Fact]
    public void Byte_counts_match_what_the_formats_hold()
    {
        // 4096 values: 2048 packed bytes, 64 one-byte block scales, one fp32 nested scale, the 256-entry map (1024) and the 16 levels (64).
        Assert.Equal(2048 + 64 + 4 + 1024 + 64, QuantizedWeight.BytesFor("nf4", 64, 64, 2));
        Assert.Equal(64 * 64 + 4 * 64, QuantizedWeight.BytesFor("int8", 64, 64, 2));
        Assert.Equal(64 * 64 * 2, QuantizedWeight.BytesFor("none", 64, 64, 2));
        using var w = torch.randn(64, 64);
        using var nf4 = Nf4Weight.Quantize(w);
        using var int8 = Int8Weight.Quantize(w);
        Assert.Equal(QuantizedWeight.BytesFor("nf4", 64, 64, 2), nf4.Bytes);
        Assert.Equal(QuantizedWeight.BytesFor("int8", 64, 64, 2), int8.Bytes);

        // Per component of a model: fp32 = 4 bytes a parameter; bf16 halves the frozen towers only; quantized towers are smaller still.
        using var model = ModelFamilies.FromPreset("tiny-instructblip", new ModelBuildOptions { Device = torch.META });
        var rows = VlPeft.Analysis.WeightBytes.Of(model).ToDictionary(r => r.Name);
        long Count(string component) => model.named_parameters().Where(p => p.name.Split('.')[0] == component).Sum(p => p.parameter.NumberOfElements);
        foreach (var tower in new[] { "vision_model", "language_model" })
        {
            var r = rows[tower];
            Assert.Equal(4 * Count(tower), r.Fp32);
            Assert.Equal(2 * Count(tower), r.Bf16);
            Assert.True(r.Nf4 < r.Int8 && r.Int8 < r.Bf16, $"{tower}: {r}");
        }
        var q = rows["qformer"];
        Assert.Equal(4 * Count("qformer"), q.Fp32);
        Assert.True(q.Fp32 == q.Bf16 && q.Bf16 == q.Int8 && q.Int8 == q.Nf4);
    }

    [Fact]
    public void A_trainable_weight_is_not_quantized()
    {
        using var layer = new Linear(8, 2);
        var e = Assert.Throws<BadInputException>(() => layer.Quantize("nf4"));
        Assert.Contains("trainable weight cannot be quantized", e.Message);
    }
}
