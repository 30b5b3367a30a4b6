using TorchSharp;
using VlPeft.Peft.Lora;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Tests.Peft;

public class LoraAdapterTests
{
    static Linear Layer(bool fanInFanOut = false)
    {
        torch.manual_seed(1);
        return new Linear(6, 4, hasBias: true, fanInFanOut: fanInFanOut);
    }

    /// <summary>Gives B non-zero values so the adapter actually contributes.</summary>
    static void Randomize(LoraAdapter lora)
    {
        using var _ = torch.no_grad();
        lora.B.weight.normal_(0, 0.5);
    }

    static void Close(Tensor expected, Tensor actual, double tol = 1e-5) =>
        Assert.True(torch.allclose(expected, actual, rtol: 0, atol: tol), $"max diff {(expected - actual).abs().max().item<float>()}");

    [Fact]
    public void Forward_equals_Wx_plus_b_plus_s_BAx()
    {
        using var layer = Layer();
        var lora = new LoraAdapter("default", layer, rank: 2, alpha: 6, dropout: 0, useRslora: false);
        layer.Attach(lora);
        Randomize(lora);
        using var x = torch.randn(3, 6);
        // Raw ops, independent of the layer's code: s = α/r = 3.
        var expected = x.matmul(layer.weight.t()) + layer.bias! + 3.0 * x.matmul(lora.A.weight.t()).matmul(lora.B.weight.t());
        Close(expected, layer.call(x));
        Assert.Equal(3.0, lora.Scaling);
        using var x3 = torch.randn(2, 5, 6); // batch × sequence × features goes through the fused path too
        Close(x3.matmul(layer.weight.t()) + layer.bias! + 3.0 * x3.matmul(lora.A.weight.t()).matmul(lora.B.weight.t()), layer.call(x3));
    }

    [Fact]
    public void Bf16_base_keeps_fp32_adapters_and_returns_the_base_dtype()
    {
        using var layer = Layer();
        layer.to(ScalarType.BFloat16);
        var lora = new LoraAdapter("default", layer, 2, 4, 0, false);
        layer.Attach(lora);
        Randomize(lora);
        Assert.Equal(ScalarType.Float32, lora.A.weight.dtype);
        using var x = torch.randn(3, 6).to(ScalarType.BFloat16);
        var y = layer.call(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        var expected = x.@float().matmul(layer.weight.@float().t()) + layer.bias!.@float()
            + 2.0 * x.@float().matmul(lora.A.weight.t()).matmul(lora.B.weight.t());
        Close(expected, y.@float(), 0.05);
    }

    // 2×3 rows < in + out = 10 adds the LoRA term to the output; 4×5 rows multiplies by the merged weight.
    [Theory]
    [InlineData(2, 3)]
    [InlineData(4, 5)]
    public void Fused_path_for_a_frozen_base_matches_raw_ops_in_values_and_gradients(int batch, int length)
    {
        using var layer = Layer();
        layer.weight.requires_grad = false;
        layer.bias!.requires_grad = false;
        var lora = new LoraAdapter("default", layer, 2, 6, 0, false);
        layer.Attach(lora);
        Randomize(lora);
        Assert.NotNull(lora.FusedForward(torch.zeros(1, 6)));   // the fused path is the one taken here
        using var x = torch.randn(batch, length, 6).requires_grad_(true);
        using var upstream = torch.randn(batch, length, 4);
        (layer.call(x) * upstream).sum().backward();
        var (gx, ga, gb) = (x.grad!.clone(), lora.A.weight.grad!.clone(), lora.B.weight.grad!.clone());
        // The same quantities by raw autograd on detached copies.
        var x2 = x.detach().clone().requires_grad_(true);
        var a = lora.A.weight.detach().clone().requires_grad_(true);
        var b = lora.B.weight.detach().clone().requires_grad_(true);
        var y = x2.matmul(layer.weight.t()) + layer.bias! + 3.0 * x2.matmul(a.t()).matmul(b.t());
        TensorAssert.Close(y, layer.call(x));
        (y * upstream).sum().backward();
        TensorAssert.Close(x2.grad!, gx);
        TensorAssert.Close(a.grad!, ga);
        TensorAssert.Close(b.grad!, gb);
    }

    [Fact]
    public void Fused_path_for_a_bf16_base_under_fp32_factors_matches_autograd_through_the_casts()
    {
        using var layer = Layer();
        layer.to(ScalarType.BFloat16);
        layer.weight.requires_grad = false;
        layer.bias!.requires_grad = false;
        var lora = new LoraAdapter("default", layer, 2, 6, 0, false);
        layer.Attach(lora);
        Randomize(lora);
        Assert.NotNull(lora.FusedForward(torch.zeros(1, 6, dtype: ScalarType.BFloat16)));
        // A non-contiguous slice of a sequence, as the Q-Former's query rows are.
        using var full = torch.randn(3, 7, 6).to(ScalarType.BFloat16);
        var x = full[.., ..5].requires_grad_(true);
        using var upstream = torch.randn(3, 5, 4).to(ScalarType.BFloat16);
        var y = layer.call(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        (y.@float() * upstream.@float()).sum().backward();
        // What HF PEFT computes, by raw autograd: base in bf16, x cast to fp32 for A then B, the update cast back and added.
        var x2 = x.detach().clone().requires_grad_(true);
        var a = lora.A.weight.detach().clone().requires_grad_(true);
        var b = lora.B.weight.detach().clone().requires_grad_(true);
        var expected = x2.matmul(layer.weight.t()) + layer.bias! + (x2.@float().matmul(a.t()) * 3.0).matmul(b.t()).to(ScalarType.BFloat16);
        (expected.@float() * upstream.@float()).sum().backward();
        // One bf16 ulp (2^-8 relative) of the largest magnitude: the two paths may round a sum in another order.
        static void Near(Tensor e, Tensor a) => TensorAssert.Close(e.@float(), a.@float(), 4e-3 * Math.Max(1, e.abs().max().@float().item<float>()));
        Near(expected, y);
        Near(x2.grad!, x.grad!);
        TensorAssert.Close(a.grad!, lora.A.weight.grad!, 1e-4);
        TensorAssert.Close(b.grad!, lora.B.weight.grad!, 1e-4);
    }

    // fp32 activations (LoRA added into the quantized matmul's output) and bf16 ones under fp32 factors (the mixed path).
    [Theory]
    [InlineData("nf4", ScalarType.Float32, 1e-5)]
    [InlineData("int8", ScalarType.BFloat16, 4e-3)]
    public void Fused_path_for_a_quantized_base_matches_raw_ops_with_the_dequantized_weight(string format, ScalarType dtype, double tolerance)
    {
        torch.manual_seed(2);
        using var layer = new Linear(64, 20);
        layer.to(dtype);
        layer.weight.requires_grad = false;
        layer.bias!.requires_grad = false;
        layer.Quantize(format);
        var lora = new LoraAdapter("default", layer, 2, 6, 0, false);
        layer.Attach(lora);
        Randomize(lora);
        Assert.NotNull(lora.FusedForward(torch.zeros(1, 64, dtype: dtype)));   // the fused path is the one taken here
        using var dense = layer.Quantized!.Dequantize(dtype);
        var x = torch.randn(3, 5, 64).to(dtype).requires_grad_(true);
        using var upstream = torch.randn(3, 5, 20);
        var y = layer.call(x);
        Assert.Equal(dtype, y.dtype);
        (y.@float() * upstream).sum().backward();
        // The unfused layer's computation by raw autograd: base matmul in the compute dtype, LoRA in fp32 from x cast, cast back.
        var x2 = x.detach().clone().requires_grad_(true);
        var a = lora.A.weight.detach().clone().requires_grad_(true);
        var b = lora.B.weight.detach().clone().requires_grad_(true);
        var expected = x2.matmul(dense.t()) + layer.bias! + (x2.@float().matmul(a.t()) * 3.0).matmul(b.t()).to(dtype);
        (expected.@float() * upstream).sum().backward();
        static void Near(Tensor e, Tensor a, double tol) => TensorAssert.Close(e.@float(), a.@float(), tol * Math.Max(1, e.abs().max().@float().item<float>()));
        Near(expected, y, tolerance);
        Near(x2.grad!, x.grad!, tolerance);
        TensorAssert.Close(a.grad!, lora.A.weight.grad!, 1e-4);
        TensorAssert.Close(b.grad!, lora.B.weight.grad!, 1e-4);
    }

    [Fact]
    public void Rslora_scales_by_alpha_over_root_r()
    {
        using var layer = Layer();
        var lora = new LoraAdapter("default", layer, rank: 4, alpha: 8, dropout: 0, useRslora: true);
        Assert.Equal(8 / Math.Sqrt(4), lora.Scaling);
    }

    [Fact]
    public void Default_init_is_a_no_op_with_A_in_kaiming_bounds()
    {
        using var layer = Layer();
        var lora = new LoraAdapter("default", layer, rank: 64, alpha: 8, dropout: 0, useRslora: false);
        layer.Attach(lora);
        Assert.Equal(0, lora.B.weight.abs().max().item<float>());
        Assert.True(lora.A.weight.abs().max().item<float>() <= 1 / Math.Sqrt(6));
        using var x = torch.randn(2, 6);
        Close(layer.Base(x), layer.call(x), 0);
    }

    [Fact]
    public void Gaussian_init_has_std_one_over_r()
    {
        using var layer = new Linear(4096, 4);
        var lora = new LoraAdapter("default", layer, rank: 4, alpha: 8, dropout: 0, useRslora: false, init: "gaussian");
        Assert.Equal(0.25, lora.A.weight.std().item<float>(), 2);
    }

    [Fact]
    public void Merge_matches_unmerged_and_unmerge_restores_the_weight()
    {
        using var layer = Layer();
        var lora = new LoraAdapter("default", layer, 2, 8, 0, false);
        layer.Attach(lora);
        Randomize(lora);
        using var original = layer.weight.detach().clone();
        using var x = torch.randn(5, 6);
        using var unmerged = layer.call(x);
        layer.Merge();
        Assert.True(layer.Merged);
        Close(unmerged, layer.call(x));
        // The merged weight is W + s·B·A, computed here independently.
        Close(original + 4.0 * lora.B.weight.matmul(lora.A.weight), layer.weight);
        layer.Unmerge();
        Assert.False(layer.Merged);
        Close(original, layer.weight, 1e-6);
    }

    [Fact]
    public void Fan_in_fan_out_weights_are_handled_transposed()
    {
        using var layer = Layer(fanInFanOut: true);
        Assert.Equal(new long[] { 6, 4 }, layer.weight.shape); // GPT-2 Conv1D layout [in, out]
        var lora = new LoraAdapter("default", layer, 2, 2, 0, false);
        layer.Attach(lora);
        Randomize(lora);
        using var x = torch.randn(3, 6);
        var expected = x.matmul(layer.weight) + layer.bias! + x.matmul(lora.A.weight.t()).matmul(lora.B.weight.t());
        Close(expected, layer.call(x));
        layer.Merge();
        Close(expected, layer.call(x));
    }

    [Fact]
    public void Safe_merge_refuses_non_finite_weights_and_leaves_the_layer_intact()
    {
        using var layer = Layer();
        var lora = new LoraAdapter("default", layer, 2, 8, 0, false);
        layer.Attach(lora);
        using (torch.no_grad()) lora.B.weight[0, 0] = torch.tensor(float.NaN);
        using var before = layer.weight.detach().clone();
        var e = Assert.Throws<BadInputException>(() => layer.Merge(safe: true));
        Assert.Contains("NaN", e.Message);
        Assert.False(layer.Merged);
        Assert.True(torch.equal(before, layer.weight).all().item<bool>());
    }

    [Fact]
    public void Disabled_adapters_give_the_base_output_and_unmerge_first()
    {
        using var layer = Layer();
        var lora = new LoraAdapter("default", layer, 2, 8, 0, false);
        layer.Attach(lora);
        Randomize(lora);
        using var x = torch.randn(2, 6);
        using var baseOut = x.matmul(layer.weight.t()) + layer.bias!;
        layer.Merge();
        layer.EnableAdapters(false);
        Close(baseOut, layer.call(x));
        Assert.False(layer.Merged);
    }

    [Fact]
    public void Active_adapters_are_summed_and_inactive_ones_ignored()
    {
        using var layer = Layer();
        var a = new LoraAdapter("a", layer, 2, 2, 0, false);
        var b = new LoraAdapter("b", layer, 3, 3, 0, false);
        layer.Attach(a);
        layer.Attach(b);
        Randomize(a);
        Randomize(b);
        using var x = torch.randn(2, 6);
        var baseOut = layer.Base(x);
        var da = x.matmul(a.A.weight.t()).matmul(a.B.weight.t());
        var db = x.matmul(b.A.weight.t()).matmul(b.B.weight.t());
        layer.SetActiveAdapters(new[] { "a", "b" });
        Close(baseOut + da + db, layer.call(x));
        layer.SetActiveAdapters(new[] { "b" });
        Close(baseOut + db, layer.call(x));
        Assert.Equal(new[] { "lora_A.a.weight", "lora_A.b.weight", "lora_B.a.weight", "lora_B.b.weight" },
            layer.named_parameters().Select(p => p.name).Where(n => n.StartsWith("lora_")).OrderBy(n => n));
    }

    [Fact]
    public void Lora_bias_is_scaled_and_merged_into_the_base_bias()
    {
        using var layer = Layer();
        var lora = new LoraAdapter("default", layer, 2, 4, 0, false, loraBias: true);
        layer.Attach(lora);
        Randomize(lora);
        using (torch.no_grad()) lora.B.bias!.normal_();
        using var x = torch.randn(2, 6);
        var expected = layer.Base(x) + 2.0 * (x.matmul(lora.A.weight.t()).matmul(lora.B.weight.t()) + lora.B.bias!);
        Close(expected, layer.call(x));
        layer.Merge();
        Close(expected, layer.call(x));
    }

    [Fact]
    public void Dropout_applies_to_the_adapter_input_in_training_only()
    {
        using var layer = Layer();
        var lora = new LoraAdapter("default", layer, 2, 8, dropout: 0.5, false);
        layer.Attach(lora);
        Randomize(lora);
        using var x = torch.randn(64, 6);
        layer.eval();
        var expected = layer.Base(x) + 4.0 * x.matmul(lora.A.weight.t()).matmul(lora.B.weight.t());
        Close(expected, layer.call(x));
        layer.train();
        Assert.False(torch.allclose(expected, layer.call(x), atol: 1e-4));
    }

    [Fact]
    public void Detach_removes_the_tensors()
    {
        using var layer = Layer();
        layer.Attach(new LoraAdapter("default", layer, 2, 8, 0, false));
        layer.Detach("default");
        Assert.Equal(new[] { "weight", "bias" }, layer.named_parameters().Select(p => p.name));
    }
}
