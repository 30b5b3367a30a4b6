using System.Text.Json;

namespace VlPeft.Tensors;

/// <summary>What <c>vlpeft inspect</c> shows: every tensor, totals, metadata, optional statistics.</summary>
public sealed record CheckpointSummary(
    IReadOnlyList<CheckpointSummary.Tensor> Tensors,
    long TotalParameters,
    long TotalBytes,
    IReadOnlyDictionary<string, JsonElement> Metadata)
{
    /// <summary>Stats is null unless requested, or when the dtype cannot be loaded.</summary>
    public sealed record Tensor(string Name, string DType, long[] Shape, long Elements, TensorStatistics? Stats);

    public static CheckpointSummary Of(string path, bool withStats)
    {
        using var checkpoint = TensorCheckpoint.Open(path);
        var tensors = new List<Tensor>();
        foreach (var entry in checkpoint.Entries)
        {
            TensorStatistics? stats = null;
            if (withStats && SafetensorsDType.IsSupported(entry.DType))
            {
                using var value = checkpoint.ReadTensor(entry.Name);
                stats = TensorStatistics.Compute(value);
            }
            tensors.Add(new Tensor(entry.Name, entry.DType, entry.Shape, entry.ElementCount, stats));
        }
        return new CheckpointSummary(tensors, tensors.Sum(t => t.Elements),
            checkpoint.Entries.Sum(e => e.ByteLength), checkpoint.Metadata);
    }
}
