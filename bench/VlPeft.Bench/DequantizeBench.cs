using TorchSharp;
using VlPeft.Nn.Quantization;
using static TorchSharp.torch;

namespace VlPeft.Bench;

/// <summary>
/// One LLaMA-7B MLP weight [11008, 4096] at 256 tokens (bf16): milliseconds to decode the whole weight with each
/// kernel (libtorch operations, and the native ones this CPU has, into a buffer allocated once), the tiled quantized
/// forward and dx beside the dense bf16 matmuls they replace, and a LoRA r = 8 layer's forward + backward over a
/// bf16, int8 and nf4 base.
/// </summary>
static class DequantizeBench
{
    public static int Run(string[] args)
    {
        VlPeft.Runtime.NativeAllocator.KeepFreedBlocksForReuse();   // as the CLI does
        long outF = 11008, inF = 4096, tokens = args.Length > 0 ? long.Parse(args[0]) : 256;
        torch.manual_seed(0);
        using var w = torch.randn(outF, inF) * 0.02;
        using var wBf16 = w.to(ScalarType.BFloat16);
        using var x = (torch.randn(tokens, inF) * 0.02).to(ScalarType.BFloat16);
        using var dy = (torch.randn(tokens, outF) * 0.02).to(ScalarType.BFloat16);
        Console.WriteLine($"weight [{outF}, {inF}], {tokens} tokens, bf16, {torch.get_num_threads()} threads; dequantization: {NativeDequantize.Describe()}");
        var dense = Timing.MedianSeconds(2, 7, () => { using var y = torch.matmul(x, wBf16.t()); }, () => { using var dx = torch.matmul(dy, wBf16); });
        Console.WriteLine($"{"dense matmul",-22}{"forward",9}{dense[0] * 1e3,8:F1} ms{"dx",6}{dense[1] * 1e3,8:F1} ms");
        using var buffer = torch.empty(outF, inF, dtype: ScalarType.BFloat16);
        foreach (var format in new[] { QuantizedWeight.Int8, QuantizedWeight.Nf4 })
        {
            using var q = QuantizedWeight.Create(format, w);
            var tiled = Timing.MedianSeconds(1, 7, () => { using var y = QuantizedLinearFunction.Forward(x, q, null); },
                () => { using var dx = QuantizedLinearFunction.InputGradient(dy, q); });
            Console.WriteLine($"{format + " tiled",-22}{"forward",9}{tiled[0] * 1e3,8:F1} ms{"dx",6}{tiled[1] * 1e3,8:F1} ms" +
                $"   ({tiled[0] / dense[0]:F2}× / {tiled[1] / dense[1]:F2}× dense)");
            Console.WriteLine($"  whole-weight decode: {Decode(q, buffer)}");
        }
        LayerStep(inF, outF, tokens);
        return 0;
    }

    static string Decode(QuantizedWeight q, Tensor buffer)
    {
        var parts = new List<string> { $"LibTorch {Timing.MedianSeconds(1, 5, () => { using var d = q.Dequantize(ScalarType.BFloat16, DequantizeKernel.LibTorch); })[0] * 1e3:F1} ms" };
        if (NativeDequantize.Best == DequantizeKernel.LibTorch) return parts[0];
        for (var k = DequantizeKernel.Scalar; k <= NativeDequantize.Best; k++)
        {
            var kernel = k;
            parts.Add($"{kernel} {Timing.MedianSeconds(1, 5, () => q.DequantizeBlock(0, q.OutFeatures, 0, q.InFeatures, buffer, kernel))[0] * 1e3:F1} ms");
        }
        return string.Join(", ", parts);
    }

    /// <summary>LoRA r = 8 forward + backward (dx wanted) through the linear with a bf16, int8 and nf4 frozen base.</summary>
    static void LayerStep(long inF, long outF, long tokens)
    {
        var layers = new[] { QuantizedWeight.None, QuantizedWeight.Int8, QuantizedWeight.Nf4 }.Select(format =>
        {
            torch.manual_seed(0);
            var layer = new VlPeft.Nn.Linear(inF, outF, hasBias: false);
            layer.to(ScalarType.BFloat16);
            layer.weight.requires_grad = false;
            layer.Quantize(format);
            layer.Attach(new VlPeft.Peft.Lora.LoraAdapter("default", layer, rank: 8, alpha: 16, dropout: 0, useRslora: false));
            return layer;
        }).ToArray();
        using var x = (torch.randn(tokens, inF) * 0.02).to(ScalarType.BFloat16).requires_grad_(true);
        var times = Timing.MedianSeconds(1, 7, layers.Select(l => (Action)(() =>
        {
            using var scope = torch.NewDisposeScope();
            l.call(x).to(ScalarType.Float32).pow(2).mean().backward();
            x.grad!.zero_();
        })).ToArray());
        Console.WriteLine($"LoRA layer fwd+bwd: bf16 {times[0] * 1e3:F1} ms, int8 {times[1] * 1e3:F1} ms ({times[1] / times[0]:F2}×), nf4 {times[2] * 1e3:F1} ms ({times[2] / times[0]:F2}×)");
        foreach (var l in layers) l.Dispose();
    }
}
