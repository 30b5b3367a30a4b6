using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Tensors;

/// <summary>
/// An open safetensors file: the validated header, and tensors read one at a time by name.
/// Bytes go straight from the file into the tensor's native storage (no managed copy of the
/// data), so loading a checkpoint costs one copy of each tensor and nothing more.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Largest single read or write; tensors above 2 GiB move in slices (Span is int-indexed).</summary>
    internal const long DefaultChunkBytes = 1L << 30;

    /// <summary>Tests shrink this to exercise the sliced path on small tensors.</summary>
    internal long ChunkBytes { get; init; } = DefaultChunkBytes;

    readonly FileStream stream;
    SafeFileHandle handle => stream.SafeFileHandle;

    SafetensorsFile(string path, FileStream stream, SafetensorsHeader header)
    {
        Path = path;
        this.stream = stream;
        Header = header;
    }

    public string Path { get; }
    public SafetensorsHeader Header { get; }

    public static SafetensorsFile Open(string path) => Open(path, DefaultChunkBytes);

    internal static SafetensorsFile Open(string path, long chunkBytes)
    {
        if (!File.Exists(path))
            throw new BadInputException("safetensors file not found", path);
        // bufferSize 0: tensor bytes go from the OS straight into native tensor storage.
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.RandomAccess);
        try
        {
            var header = SafetensorsHeader.Read(stream, path);
            return new SafetensorsFile(path, stream, header) { ChunkBytes = chunkBytes };
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads the header only.</summary>
    public static SafetensorsHeader ReadHeader(string path)
    {
        using var file = Open(path);
        return file.Header;
    }

    /// <summary>Reads one tensor (CPU, its stored dtype) without touching the others.</summary>
    public Tensor ReadTensor(string name)
    {
        var entry = Header.Find(name) ?? throw new BadInputException($"tensor '{name}' is not in this file", Path);
        return ReadTensor(entry);
    }

    public Tensor ReadTensor(TensorEntry entry)
    {
        if (!SafetensorsDType.IsSupported(entry.DType))
            throw new BadInputException($"tensor '{entry.Name}' has dtype {entry.DType}, which VlPeft cannot load", Path);
        var tensor = torch.empty(entry.Shape, SafetensorsDType.ToTorch(entry.DType));
        try
        {
            FillFromFile(tensor, entry);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>Reads every tensor, in header order.</summary>
    public Dictionary<string, Tensor> ReadAll() => Header.Tensors.ToDictionary(e => e.Name, ReadTensor);

    void FillFromFile(Tensor tensor, TensorEntry entry)
    {
        if (entry.ByteLength == 0) return;
        long elementSize = entry.ByteLength / entry.ElementCount;
        long chunkElements = Math.Max(1, ChunkBytes / elementSize);
        using var flat = tensor.view(-1);
        long fileOffset = Header.DataStart + entry.Begin;
        for (long start = 0; start < entry.ElementCount; start += chunkElements)
        {
            long count = Math.Min(chunkElements, entry.ElementCount - start);
            using var slice = flat.narrow(0, start, count);
            Span<byte> destination = slice.bytes;
            while (!destination.IsEmpty)
            {
                int read = RandomAccess.Read(handle, destination, fileOffset);
                if (read == 0)
                    throw new BadInputException($"file ended while reading tensor '{entry.Name}' (changed on disk?)", Path);
                destination = destination[read..];
                fileOffset += read;
            }
        }
    }

    public void Dispose() => stream.Dispose();
}
