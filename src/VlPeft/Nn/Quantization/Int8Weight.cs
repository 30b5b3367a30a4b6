using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn.Quantization;

/// <summary>
/// Symmetric int8 per output channel (bitsandbytes' Linear8bitLt storage: <c>weight</c> int8 and <c>SCB</c>, the row
/// absolute maxima): q = round(127·w / absmax_row), w ≈ q·absmax_row / 127.
/// </summary>
public sealed class Int8Weight : QuantizedWeight
{
    public Int8Weight(Tensor values, Tensor rowAbsmax) : base(values.shape[0], values.shape[1])
    {
        if (values.dtype != ScalarType.Int8) throw new BadInputException($"8-bit weight is {values.dtype}; expected int8");
        if (rowAbsmax.numel() != values.shape[0]) throw new BadInputException($"SCB has {rowAbsmax.numel()} values; the weight has {values.shape[0]} rows");
        // Owned from here on, whatever dispose scope the caller is in.
        Values = values.contiguous().DetachFromDisposeScope();   // row-major, as the native kernels read it
        RowAbsmax = rowAbsmax.to(ScalarType.Float32).reshape(-1).DetachFromDisposeScope();
    }

    public Tensor Values { get; }
    public Tensor RowAbsmax { get; }
    public override string Format => Int8;
    public override long Bytes => Values.numel() + 4 * RowAbsmax.numel();

    /// <summary>Rows handled per pass: bounds the fp32 temporaries of a large weight to about 1 M values (cache-sized).</summary>
    static long RowsPerChunk(long inFeatures) => Math.Max(1, (1L << 20) / Math.Max(1, inFeatures));

    public static Int8Weight Quantize(Tensor weightOutIn)
    {
        using var quiet = Runtime.GcQuietRegion.Enter();   // implicit Scalars (w * 127, …) must outlive their native calls
        long rows = weightOutIn.shape[0], cols = weightOutIn.shape[1];
        var q = torch.empty(rows, cols, dtype: ScalarType.Int8);
        var absmax = torch.empty(rows);
        for (long start = 0; start < rows; start += RowsPerChunk(cols))
        {
            using var scope = torch.NewDisposeScope();
            long count = Math.Min(RowsPerChunk(cols), rows - start);
            var w = weightOutIn.detach().narrow(0, start, count).to(ScalarType.Float32);
            var max = w.abs().amax(new long[] { 1 });
            var safe = torch.where(max.eq(0), torch.ones_like(max), max);
            q.narrow(0, start, count).copy_((w * 127 / safe.unsqueeze(1)).round_().clamp_(-127, 127));
            absmax.narrow(0, start, count).copy_(max);
        }
        return new Int8Weight(q, absmax);
    }

    public override Device Device => Values.device;

    internal override void DequantizeBlock(long row0, long rows, long col0, long cols, Tensor output, DequantizeKernel kernel, Tensor? rowIds = null) =>
        NativeDequantize.Int8(this, row0, rows, col0, cols, output, kernel, rowIds);

    protected override Tensor DequantizeWithLibTorch(ScalarType dtype)
    {
        long rows = OutFeatures;
        var result = torch.empty(rows, InFeatures, dtype: dtype, device: Values.device);
        using var scope = torch.NewDisposeScope();
        var scales = RowAbsmax.div(127);   // fp32, as the native kernel computes it: both paths give the same bits
        for (long start = 0; start < rows; start += RowsPerChunk(InFeatures))
        {
            using var chunkScope = torch.NewDisposeScope();
            long count = Math.Min(RowsPerChunk(InFeatures), rows - start);
            result.narrow(0, start, count).copy_(Values.narrow(0, start, count).to(ScalarType.Float32).mul_(scales.narrow(0, start, count).unsqueeze(1)));
        }
        return result;
    }

    protected override Tensor GatherRowsWithLibTorch(Tensor rows, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var scales = RowAbsmax.div(127).index_select(0, rows);
        return Values.index_select(0, rows).to(ScalarType.Float32).mul_(scales.unsqueeze(1)).to(dtype).MoveToOuterDisposeScope();
    }

    public override void Dispose()
    {
        Values.Dispose();
        RowAbsmax.Dispose();
    }
}
