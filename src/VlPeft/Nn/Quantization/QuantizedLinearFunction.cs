using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn.Quantization;

/// <summary>
/// y = x·Wᵀ + b for a quantized frozen W, and dx = dy·W in backward; no gradient for W or b. With the native kernels
/// the weight is decoded a tile at a time into a buffer kept per thread, each tile's matmul writing its own slice of
/// the result: rows of W for y's columns, columns of W for dx's columns, so every output value still comes from one
/// matmul over the whole reduction. No full-precision copy of a large W exists at any moment. Without them (other
/// devices, fp16, no native library) W is dequantized whole for the matmul and dropped after it.
/// </summary>
sealed class QuantizedLinearFunction : torch.autograd.SingleTensorFunction<QuantizedLinearFunction>
{
    /// <summary>
    /// Values per decoded tile. Forward: 1 M (2 MB of bf16 stays in this machine's L2 between decoding and the matmul;
    /// a 7B layer's rows 256 at a time). dx: 32 M, as every tile is a separate matmul that packs all of dy again (bench
    /// dequantize, 11008 × 4096 at 256 tokens: dx 1.3× the dense matmul with 256-column tiles, 1.2× with two, 1.0× with one).
    /// </summary>
    internal const long TileValues = 1L << 20, InputGradientTileValues = 1L << 25;

    /// <summary>
    /// Forward tiles hold whole groups of this many rows of W (the matmul's output columns): a matmul with fewer runs far
    /// below peak (bench dequantize, LLaMA-7B's down_proj [4096, 11008] at 256 tokens: tiles of 95 rows 1.65× the dense
    /// matmul, of 128 rows 1.15×).
    /// </summary>
    internal const long RowGroup = 128;

    public override string Name => "QuantizedLinear";

    // Each thread's tile buffer per dtype, kept between matmuls (32 M values, 64 MB of bf16, unless 64 columns of W are
    // more): a fresh buffer per matmul, of a different size per layer, fragments glibc's heap, which then keeps growing.
    [ThreadStatic] static Dictionary<ScalarType, Tensor>? tileBuffers;

    static Tensor TileBuffer(long values, ScalarType dtype)
    {
        tileBuffers ??= new Dictionary<ScalarType, Tensor>();
        if (!tileBuffers.TryGetValue(dtype, out var buffer) || buffer.numel() < values)
        {
            buffer?.Dispose();
            tileBuffers[dtype] = buffer = torch.empty(values, dtype: dtype).DetachFromDisposeScope();
        }
        return buffer.narrow(0, 0, values);
    }

    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, weight, bias) = ((Tensor)vars[0], (QuantizedWeight)vars[1], (Tensor?)vars[2]);
        ctx.save_data("weight", weight);
        ctx.save_data("inputShape", x.shape);
        ctx.save_data("inputNeedsGrad", x.requires_grad);
        var x2 = x.reshape(-1, x.shape[^1]);
        return Forward(x2, weight, bias).view(x.shape[..^1].Append(weight.OutFeatures).ToArray());
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad)
    {
        if (!(bool)ctx.get_data("inputNeedsGrad")) return new List<Tensor> { null!, null!, null! };   // no dx wanted: no second decoding
        var weight = (QuantizedWeight)ctx.get_data("weight");
        var dx = InputGradient(grad.reshape(-1, grad.shape[^1]), weight).view((long[])ctx.get_data("inputShape"));
        return new List<Tensor> { dx, null!, null! };
    }

    /// <summary>Whether the native kernels serve this matmul (weight and activations on the CPU, fp32 or bf16), and which.</summary>
    internal static bool Tiled(QuantizedWeight weight, Tensor activations, out DequantizeKernel kernel)
    {
        kernel = NativeDequantize.Resolve(DequantizeKernel.Best, weight.Device, activations.dtype);
        return kernel != DequantizeKernel.LibTorch && activations.device_type == DeviceType.CPU;
    }

    internal static Tensor Forward(Tensor x2, QuantizedWeight weight, Tensor? bias, long tileValues = TileValues, long rowGroup = RowGroup)
    {
        if (!Tiled(weight, x2, out var kernel))
        {
            using var w = weight.Dequantize(x2.dtype);
            return bias is null ? torch.matmul(x2, w.t()) : torch.addmm(bias.to(x2.dtype), x2, w.t(), 1, 1);
        }
        long tokens = x2.shape[0], inF = weight.InFeatures, outF = weight.OutFeatures;
        var y = bias is null ? torch.empty(tokens, outF, dtype: x2.dtype, device: x2.device) : bias.to(x2.dtype).expand(tokens, outF).contiguous();
        using var scope = torch.NewDisposeScope();
        // Tiles of equal height (a short last tile is a slow matmul) in whole row groups, about tileValues values each.
        long maxRows = Math.Max(rowGroup, tileValues / inF / rowGroup * rowGroup), tiles = (outF + maxRows - 1) / maxRows;
        long rowsPerTile = Math.Min(outF, ((outF + tiles - 1) / tiles + rowGroup - 1) / rowGroup * rowGroup);
        var buffer = TileBuffer(rowsPerTile * inF, x2.dtype);
        for (long row0 = 0; row0 < outF; row0 += rowsPerTile)
        {
            long rows = Math.Min(rowsPerTile, outF - row0);
            var tile = buffer.narrow(0, 0, rows * inF).view(rows, inF);
            weight.DequantizeBlock(row0, rows, 0, inF, tile, kernel);
            y.narrow(1, row0, rows).addmm_(x2, tile.t(), beta: bias is null ? 0 : 1, alpha: 1);   // beta 0 ignores the empty values
        }
        return y;
    }

    internal static Tensor InputGradient(Tensor dy2, QuantizedWeight weight, long tileValues = InputGradientTileValues)
    {
        if (!Tiled(weight, dy2, out var kernel))
        {
            using var w = weight.Dequantize(dy2.dtype);
            return torch.matmul(dy2, w);
        }
        long tokens = dy2.shape[0], inF = weight.InFeatures, outF = weight.OutFeatures;
        var dx = torch.empty(tokens, inF, dtype: dy2.dtype, device: dy2.device);
        using var scope = torch.NewDisposeScope();
        // Tiles of equal width (a narrow last tile is a slow matmul) in whole 64-column groups, which keep a 4-bit tile's
        // rows on block boundaries when the row length allows it.
        long maxCols = Math.Max(64, tileValues / outF / 64 * 64), tiles = (inF + maxCols - 1) / maxCols;
        long colsPerTile = Math.Min(inF, ((inF + tiles - 1) / tiles + 63) / 64 * 64);
        var buffer = TileBuffer(outF * colsPerTile, dy2.dtype);
        for (long col0 = 0; col0 < inF; col0 += colsPerTile)
        {
            long cols = Math.Min(colsPerTile, inF - col0);
            var tile = buffer.narrow(0, 0, outF * cols).view(outF, cols);
            weight.DequantizeBlock(0, outF, col0, cols, tile, kernel);
            dx.narrow(1, col0, cols).addmm_(dy2, tile, beta: 0, alpha: 1);
        }
        return dx;
    }
}
