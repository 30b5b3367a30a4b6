using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn.Quantization;

/// <summary>
/// A frozen linear weight [out, in] held in a compact integer form, dequantized into the compute dtype only for the
/// matmul that needs it (<see cref="QuantizedLinearFunction"/>). Formats: <see cref="Nf4Weight"/> (QLoRA's 4-bit
/// NormalFloat) and <see cref="Int8Weight"/> (LLM.int8's per-row absmax).
/// </summary>
public abstract class QuantizedWeight : IDisposable
{
    public const string Nf4 = "nf4", Int8 = "int8", None = "none";
    public static readonly IReadOnlyList<string> Formats = new[] { None, Nf4, Int8 };

    protected QuantizedWeight(long outFeatures, long inFeatures)
    {
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
    }

    public long OutFeatures { get; }
    public long InFeatures { get; }
    public abstract string Format { get; }

    /// <summary>Bytes held (codes and scales), for reports.</summary>
    public abstract long Bytes { get; }

    /// <summary>Where the codes live.</summary>
    public abstract Device Device { get; }

    /// <summary>The weight [out, in] in <paramref name="dtype"/> (every kernel gives the same bits; tests pick one).</summary>
    public Tensor Dequantize(ScalarType dtype, DequantizeKernel kernel = DequantizeKernel.Best)
    {
        kernel = NativeDequantize.Resolve(kernel, Device, dtype);
        if (kernel == DequantizeKernel.LibTorch) return DequantizeWithLibTorch(dtype);
        var result = torch.empty(OutFeatures, InFeatures, dtype: dtype, device: Device);
        DequantizeBlock(0, OutFeatures, 0, InFeatures, result, kernel);
        return result;
    }

    protected abstract Tensor DequantizeWithLibTorch(ScalarType dtype);

    /// <summary>
    /// The rows a set of ids picks, [ids.numel(), in] in <paramref name="dtype"/>: an embedding lookup on a quantized table.
    /// Only those rows are decoded; the same bits as the rows of <see cref="Dequantize"/>.
    /// </summary>
    public Tensor DequantizeRows(Tensor ids, ScalarType dtype, DequantizeKernel kernel = DequantizeKernel.Best)
    {
        using var scope = torch.NewDisposeScope();
        var rows = ids.reshape(-1).to(ScalarType.Int64, Device).contiguous();
        if (rows.numel() > 0 && (rows.min().item<long>(), rows.max().item<long>()) is var (min, max) && (min < 0 || max >= OutFeatures))
            throw new BadInputException($"token ids {min}…{max} are outside the table's {OutFeatures} rows");
        kernel = NativeDequantize.Resolve(kernel, Device, dtype);
        if (kernel == DequantizeKernel.LibTorch) return GatherRowsWithLibTorch(rows, dtype).MoveToOuterDisposeScope();
        var result = torch.empty(rows.numel(), InFeatures, dtype: dtype, device: Device);
        DequantizeBlock(0, rows.numel(), 0, InFeatures, result, kernel, rows);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Rows (valid int64 ids on <see cref="Device"/>) decoded with libtorch operations, as <see cref="DequantizeWithLibTorch"/> computes them.</summary>
    protected abstract Tensor GatherRowsWithLibTorch(Tensor rows, ScalarType dtype);

    /// <summary>
    /// Rows [row0, row0 + rows) × columns [col0, col0 + cols) of the weight — or with <paramref name="rowIds"/> (int64, CPU)
    /// the rows it lists, row0 = 0 — written into <paramref name="output"/> (contiguous [rows, cols], fp32 or bf16, CPU)
    /// by a native kernel (one that <see cref="NativeDequantize.Resolve"/> gave).
    /// </summary>
    internal abstract void DequantizeBlock(long row0, long rows, long col0, long cols, Tensor output, DequantizeKernel kernel, Tensor? rowIds = null);

    /// <summary>Quantizes a weight given as [out, in].</summary>
    public static QuantizedWeight Create(string format, Tensor weightOutIn, bool doubleQuant = true) => format switch
    {
        Nf4 => Nf4Weight.Quantize(weightOutIn, doubleQuant: doubleQuant),
        Int8 => Int8Weight.Quantize(weightOutIn),
        _ => throw new BadInputException($"unknown quantization '{format}' (expected {string.Join(", ", Formats)})"),
    };

    /// <summary>Bytes a weight of this shape takes in a format (no allocation): for <c>vlpeft params</c>.</summary>
    public static long BytesFor(string format, long outFeatures, long inFeatures, int fullPrecisionBytes) => format switch
    {
        Nf4 => Nf4Weight.BytesFor(outFeatures * inFeatures, doubleQuant: true),
        Int8 => outFeatures * inFeatures + 4 * outFeatures,
        _ => outFeatures * inFeatures * fullPrecisionBytes,
    };

    /// <summary>
    /// The stand-in for a quantized module's weight parameter: a zero-stride tensor of the weight's shape and compute dtype
    /// (one element of storage), so parameter counts and dtype queries hold.
    /// </summary>
    public static TorchSharp.Modules.Parameter Placeholder(long[] shape, ScalarType dtype, Device device) =>
        new(torch.zeros(1, dtype: dtype, device: device).expand(shape).DetachFromDisposeScope(), requires_grad: false);

    public abstract void Dispose();
}
