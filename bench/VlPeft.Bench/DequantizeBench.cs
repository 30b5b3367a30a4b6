using TorchSharp;
using VlPeft.Nn.Quantization;
using static TorchSharp.torch;

namespace VlPeft.Bench;

/// <summary>
/// LLaMA-7B's MLP weights [11008, 4096] and [4096, 11008] at 256 tokens (bf16): milliseconds to decode the whole weight with each
/// kernel (libtorch operations, and the native ones this CPU has, into a buffer allocated once), the tiled quantized
/// forward and dx beside the dense bf16 matmuls they replace, a LoRA r = 8 layer's forward + backward over a
/// bf16, int8 and nf4 base, and the lookup of the tokens in a LLaMA-7B token table [32000, 4096] held quantized.
/// </summary>
static class DequantizeBench
{
    public static int Run(string[] args)
    {
        VlPeft.Runtime.NativeAllocator.KeepFreedBlocksForReuse();   // as the CLI does
        long tokens = args.Length > 0 ? long.Parse(args[0]) : 256;
        Console.WriteLine($"{tokens} tokens, bf16, {torch.get_num_threads()} threads; dequantization: {NativeDequantize.Describe()}");
        // LLaMA-7B's MLP weights: gate/up [11008, 4096] and down [4096, 11008] (rows of 11008 values: fewer per tile).
        foreach (var (outF, inF) in new[] { (11008L, 4096L), (4096L, 11008L) }) Matmuls(outF, inF, tokens);
        LayerStep(4096, 11008, tokens);
        TableLookup(tokens);
        return 0;
    }

    static void Matmuls(long outF, long inF, long tokens)
    {
        torch.manual_seed(0);
        using var w = torch.randn(outF, inF) * 0.02;
        using var wBf16 = w.to(ScalarType.BFloat16);
        using var x = (torch.randn(tokens, inF) * 0.02).to(ScalarType.BFloat16);
        using var dy = (torch.randn(tokens, outF) * 0.02).to(ScalarType.BFloat16);
        Console.WriteLine($"weight [{outF}, {inF}]");
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

    /// <summary>Looking up the tokens (random ids) in a bf16 table, and in int8 and nf4 tables with each kernel.</summary>
    static void TableLookup(long tokens)
    {
        torch.manual_seed(0);
        using var table = (torch.randn(32000, 4096) * 0.02).to(ScalarType.BFloat16);
        using var ids = torch.randint(32000, tokens, dtype: ScalarType.Int64);
        var parts = new List<string> { $"bf16 {Timing.MedianSeconds(2, 9, () => { using var rows = table.index_select(0, ids); })[0] * 1e3:F2} ms" };
        foreach (var format in new[] { QuantizedWeight.Int8, QuantizedWeight.Nf4 })
        {
            using var q = QuantizedWeight.Create(format, table);
            foreach (var kernel in new[] { DequantizeKernel.LibTorch, NativeDequantize.Best }.Distinct())
                parts.Add($"{format} {kernel} {Timing.MedianSeconds(2, 9, () => { using var rows = q.DequantizeRows(ids, ScalarType.BFloat16, kernel); })[0] * 1e3:F2} ms");
        }
        Console.WriteLine($"token table [32000, 4096] lookup of {tokens} ids: {string.Join(", ", parts)}");
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
