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
        Values = values.DetachFromDisposeScope();
        RowAbsmax = rowAbsmax.to(ScalarType.Float32).reshape(-1).DetachFromDisposeScope();
    }

    public Tensor Values { get; }
    public Tensor RowAbsmax { get; }
    public override string Format => Int8;
    public override long Bytes => Values.numel() + 4 * RowAbsmax.numel();

    public static Int8Weight Quantize(Tensor weightOutIn)
    {
        Tensor q, absmax;
        using (torch.NewDisposeScope())
        {
            var w = weightOutIn.detach().to(ScalarType.Float32);
            var max = w.abs().amax(new long[] { 1 });
            var safe = torch.where(max.eq(0), torch.ones_like(max), max);
            q = (w * 127 / safe.unsqueeze(1)).round().clamp(-127, 127).to(ScalarType.Int8).DetachFromDisposeScope();
            absmax = max.DetachFromDisposeScope();
        }
        return new Int8Weight(q, absmax);
    }

    public override Tensor Dequantize(ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        return (Values.to(ScalarType.Float32) * (RowAbsmax / 127).unsqueeze(1)).to(dtype).MoveToOuterDisposeScope();
    }

    public override void Dispose()
    {
        Values.Dispose();
        RowAbsmax.Dispose();
    }
}
