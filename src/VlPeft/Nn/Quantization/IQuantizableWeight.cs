using static TorchSharp.torch;

namespace VlPeft.Nn.Quantization;

/// <summary>
/// A module whose frozen weight may be held quantized (<see cref="Linear"/>, and token tables of <see cref="Embedding"/>):
/// what the checkpoint loader, the quantization plan, saving and merging need, whichever module holds it.
/// </summary>
public interface IQuantizableWeight
{
    /// <summary>The weight parameter (a zero-stride placeholder of the same shape and dtype while quantized).</summary>
    TorchSharp.Modules.Parameter weight { get; }

    /// <summary>The weight in quantized form, or null when it is held in full precision.</summary>
    QuantizedWeight? Quantized { get; }

    /// <summary>Whether the weight still waits for a checkpoint's values (<see cref="Linear.DeferWeightAllocation"/>).</summary>
    bool WeightPending { get; }

    /// <summary>Gives a pending weight its checkpoint values; with <paramref name="quantizeTo"/>, quantized straight away.</summary>
    void LoadWeight(Tensor value, string? quantizeTo);

    /// <summary>Stores the frozen weight quantized (nf4 or int8).</summary>
    void Quantize(string format, bool doubleQuant = true);

    /// <summary>Takes a quantized weight made elsewhere (a bitsandbytes checkpoint), checking its shape.</summary>
    void UseQuantized(QuantizedWeight quantized, Device? device = null);

    /// <summary>Back to a full-precision weight holding the dequantized values.</summary>
    void Dequantize();
}
