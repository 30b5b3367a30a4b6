using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Tensors;

/// <summary>
/// Writes safetensors files that any conforming reader accepts: header padded with spaces to a
/// multiple of 8, offsets relative to the data buffer, tensors stored contiguously, little-endian.
/// The file appears atomically (temp file + rename), so a crash never leaves half a checkpoint.
/// </summary>
public static class SafetensorsWriter
{
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors, metadata, SafetensorsFile.DefaultChunkBytes);

    internal static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata, long chunkBytes)
    {
        var items = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var duplicate = items.GroupBy(kv => kv.Key).FirstOrDefault(g => g.Count() > 1);
        if (duplicate != null)
            throw new ArgumentException($"tensor name '{duplicate.Key}' appears twice");

        byte[] header = BuildHeader(items, metadata);
        AtomicFile.Replace(path, temp =>
        {
            using var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
            stream.Write(BitConverter.GetBytes((ulong)header.Length));
            stream.Write(header);
            foreach (var (_, tensor) in items)
                WriteData(stream, tensor, chunkBytes);
            stream.Flush(flushToDisk: true);
        });
    }

    static byte[] BuildHeader(List<KeyValuePair<string, Tensor>> items, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, tensor) in items)
            {
                long length = tensor.NumberOfElements * tensor.ElementSize;
                json.WriteStartObject(name);
                json.WriteString("dtype", SafetensorsDType.FromTorch(tensor.dtype));
                json.WriteStartArray("shape");
                foreach (long d in tensor.shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += length;
            }
            json.WriteEndObject();
        }
        int padded = (int)((buffer.Length + 7) / 8 * 8);
        var header = new byte[padded];
        buffer.GetBuffer().AsSpan(0, (int)buffer.Length).CopyTo(header);
        header.AsSpan((int)buffer.Length).Fill((byte)' ');
        return header;
    }

    static void WriteData(Stream stream, Tensor tensor, long chunkBytes)
    {
        if (tensor.NumberOfElements == 0) return;
        using var scope = torch.NewDisposeScope();
        var cpu = tensor.detach().cpu().contiguous();
        var flat = cpu.view(-1);
        long chunkElements = Math.Max(1, chunkBytes / cpu.ElementSize);
        for (long start = 0; start < cpu.NumberOfElements; start += chunkElements)
        {
            long count = Math.Min(chunkElements, cpu.NumberOfElements - start);
            stream.Write(flat.narrow(0, start, count).bytes);
        }
    }
}
