using System.Text;
using System.Text.Json;

namespace VlPeft.Tensors;

/// <summary>
/// The parsed and validated JSON header of a safetensors file. Validation follows the format's
/// rules (models.md §12): the data buffer is tiled exactly by the tensors, byte lengths match
/// dtype × shape, names are unique, and nothing is trusted before it is checked.
/// </summary>
public sealed class SafetensorsHeader
{
    /// <summary>The format's own cap on the header size; also what keeps a forged length from allocating.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public SafetensorsHeader(IReadOnlyList<TensorEntry> tensors, IReadOnlyDictionary<string, string> metadata, long dataStart)
    {
        Tensors = tensors;
        Metadata = metadata;
        DataStart = dataStart;
        byName = tensors.ToDictionary(t => t.Name);
    }

    readonly Dictionary<string, TensorEntry> byName;

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<TensorEntry> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Absolute file offset of the data buffer (8 + header length).</summary>
    public long DataStart { get; }

    public bool Contains(string name) => byName.ContainsKey(name);
    public TensorEntry? Find(string name) => byName.GetValueOrDefault(name);

    /// <summary>Reads and validates the header of <paramref name="stream"/> (positioned anywhere).</summary>
    public static SafetensorsHeader Read(Stream stream, string file)
    {
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw Bad($"file is {fileLength} bytes, shorter than the 8-byte header length", file);
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.Position = 0;
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BitConverter.ToUInt64(lengthBytes);
        if (headerLength > MaxHeaderBytes)
            throw Bad($"header length {headerLength} exceeds the format's limit of {MaxHeaderBytes} bytes", file);
        if ((long)headerLength > fileLength - 8)
            throw Bad($"header length {headerLength} is larger than the file ({fileLength} bytes): truncated or not safetensors", file);
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLength;
        return Parse(headerBytes, dataStart, fileLength - dataStart, file);
    }

    static SafetensorsHeader Parse(byte[] headerBytes, long dataStart, long dataLength, string file)
    {
        string json;
        try
        {
            json = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(headerBytes);
        }
        catch (DecoderFallbackException)
        {
            throw Bad("header is not valid UTF-8", file);
        }
        if (!json.StartsWith('{'))
            throw Bad("header does not start with '{': not a safetensors file", file);

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.TrimEnd(' '));
        }
        catch (JsonException e)
        {
            throw Bad($"header is not valid JSON: {e.Message}", file);
        }

        using (doc)
        {
            var tensors = new List<TensorEntry>();
            var metadata = new Dictionary<string, string>();
            var seen = new HashSet<string>();
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                    throw Bad($"duplicate tensor name '{property.Name}' in header", file);
                if (property.Name == "__metadata__")
                    ReadMetadata(property.Value, metadata, file);
                else
                    tensors.Add(ReadEntry(property.Name, property.Value, file));
            }
            CheckTiling(tensors, dataLength, file);
            return new SafetensorsHeader(tensors, metadata, dataStart);
        }
    }

    static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, string file)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad("__metadata__ must be an object of string values", file);
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw Bad($"__metadata__ value '{item.Name}' is not a string", file);
            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    static TensorEntry ReadEntry(string name, JsonElement value, string file)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad($"tensor '{name}': entry is not an object", file);
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Bad($"tensor '{name}': missing string field 'dtype'", file);
        string dtype = dtypeElement.GetString()!;
        if (!SafetensorsDType.IsKnown(dtype))
            throw Bad($"tensor '{name}': unknown dtype '{dtype}'", file);

        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Bad($"tensor '{name}': missing array field 'shape'", file);
        var shape = new List<long>();
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long d) || d < 0)
                throw Bad($"tensor '{name}': shape entry {dim.GetRawText()} is not a non-negative integer", file);
            shape.Add(d);
        }

        if (!value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array
            || offsets.GetArrayLength() != 2)
            throw Bad($"tensor '{name}': 'data_offsets' must be [begin, end]", file);
        if (!offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw Bad($"tensor '{name}': data_offsets {offsets.GetRawText()} are not 0 <= begin <= end", file);

        // Overflow-checked element count: a forged shape must not wrap around to a plausible size.
        long elements = 1;
        try
        {
            foreach (long d in shape) elements = checked(elements * d);
            long bits = checked(elements * SafetensorsDType.BitsPerElement(dtype));
            if (bits % 8 != 0)
                throw Bad($"tensor '{name}': {elements} elements of {dtype} do not end on a byte boundary", file);
            if (bits / 8 != end - begin)
                throw Bad($"tensor '{name}': dtype {dtype} × shape [{string.Join(", ", shape)}] needs {bits / 8} bytes but data_offsets span {end - begin}", file);
        }
        catch (OverflowException)
        {
            throw Bad($"tensor '{name}': shape [{string.Join(", ", shape)}] is absurdly large", file);
        }
        return new TensorEntry(name, dtype, shape.ToArray(), begin, end);
    }

    /// <summary>Sorted by offset, the tensors must cover [0, dataLength) with no hole and no overlap.</summary>
    static void CheckTiling(List<TensorEntry> tensors, long dataLength, string file)
    {
        long expected = 0;
        foreach (var t in tensors.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (t.End > dataLength)
                throw Bad($"tensor '{t.Name}': data_offsets [{t.Begin}, {t.End}] lie outside the data buffer of {dataLength} bytes", file);
            if (t.Begin < expected)
                throw Bad($"tensor '{t.Name}': data_offsets [{t.Begin}, {t.End}] overlap the previous tensor (which ends at {expected})", file);
            if (t.Begin > expected)
                throw Bad($"data buffer has a hole: bytes [{expected}, {t.Begin}) belong to no tensor (before '{t.Name}')", file);
            expected = t.End;
        }
        if (expected != dataLength)
            throw Bad($"data buffer is {dataLength} bytes but the tensors cover only {expected}", file);
    }

    static BadInputException Bad(string message, string file) => new($"invalid safetensors: {message}", file);
}
