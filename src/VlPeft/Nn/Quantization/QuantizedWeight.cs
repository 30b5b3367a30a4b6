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

    /// <summary>The weight [out, in] in <paramref name="dtype"/>.</summary>
    public abstract Tensor Dequantize(ScalarType dtype);

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

    public abstract void Dispose();
}
