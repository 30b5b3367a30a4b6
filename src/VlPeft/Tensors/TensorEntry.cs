namespace VlPeft.Tensors;

/// <summary>One tensor as described by a safetensors header. Offsets are relative to the data buffer.</summary>
public sealed record TensorEntry(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => End - Begin;
}
