using System.Text.Json;
using static TorchSharp.torch;

namespace VlPeft.Tensors;

/// <summary>
/// A set of named tensors on disk: one safetensors file, or a sharded checkpoint described by a
/// Transformers <c>*.safetensors.index.json</c> (weight_map: name → shard file). Tensors are read
/// one by one, so a loader can stream a 7B checkpoint without holding two copies. PyTorch files
/// (<c>.pth</c>, <c>.pt</c>, <c>.bin</c>, and <c>pytorch_model.bin.index.json</c> shards) are read through
/// <see cref="PthFile"/>'s allow-list unpickler, which runs no code; each such file is held in memory once opened.
/// </summary>
public sealed class TensorCheckpoint : IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";
    public const string SingleFileName = "model.safetensors";

    readonly Dictionary<string, string> shardByTensor;
    readonly Dictionary<string, SafetensorsFile> openShards = new();
    readonly Dictionary<string, Dictionary<string, Tensor>> pickledShards = new();

    TensorCheckpoint(string path, IReadOnlyList<string> shardPaths, Dictionary<string, string> shardByTensor,
        IReadOnlyList<TensorEntry> entries, IReadOnlyDictionary<string, JsonElement> metadata)
    {
        Path = path;
        ShardPaths = shardPaths;
        this.shardByTensor = shardByTensor;
        Entries = entries;
        Metadata = metadata;
    }

    /// <summary>The file that was opened (a .safetensors file or the index).</summary>
    public string Path { get; }
    public IReadOnlyList<string> ShardPaths { get; }
    /// <summary>All tensors, in file order (shard by shard).</summary>
    public IReadOnlyList<TensorEntry> Entries { get; private set; }
    /// <summary>The single file's <c>__metadata__</c>, or the index's <c>metadata</c> object.</summary>
    public IReadOnlyDictionary<string, JsonElement> Metadata { get; }

    public bool Contains(string name) => shardByTensor.ContainsKey(name);

    /// <summary>Opens a .safetensors file, an index JSON, or a directory holding either.</summary>
    public static TensorCheckpoint Open(string path)
    {
        if (Directory.Exists(path)) return Open(FindInDirectory(path));
        if (!File.Exists(path)) throw new BadInputException("no such file or directory", path);
        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(path)
            : IsPickled(path) ? OpenPickled(path) : OpenSingle(path);
    }

    /// <summary>PyTorch's own formats, told apart from safetensors by extension.</summary>
    static bool IsPickled(string path) =>
        new[] { ".pth", ".pt", ".bin", ".ckpt" }.Any(e => path.EndsWith(e, StringComparison.OrdinalIgnoreCase));

    static TensorCheckpoint OpenPickled(string path)
    {
        var checkpoint = new TensorCheckpoint(path, new[] { path }, new Dictionary<string, string>(), Array.Empty<TensorEntry>(), new Dictionary<string, JsonElement>());
        var tensors = checkpoint.Pickled(path);
        foreach (var name in tensors.Keys) checkpoint.shardByTensor[name] = path;
        checkpoint.Entries = tensors.Select(kv => Entry(kv.Key, kv.Value)).ToList();
        return checkpoint;
    }

    static TensorEntry Entry(string name, Tensor t) =>
        new(name, SafetensorsDType.FromTorch(t.dtype), t.shape, 0, t.numel() * t.element_size());

    /// <summary>A PyTorch file's tensors by state-dict key, read once (LaVIN-style {"model": {...}} keeps its "model." prefix).</summary>
    Dictionary<string, Tensor> Pickled(string file)
    {
        if (!pickledShards.TryGetValue(file, out var tensors))
            pickledShards[file] = tensors = PthFile.ReadTensors(file);
        return tensors;
    }

    static string FindInDirectory(string directory)
    {
        string index = System.IO.Path.Combine(directory, IndexFileName);
        if (File.Exists(index)) return index;
        string single = System.IO.Path.Combine(directory, SingleFileName);
        if (File.Exists(single)) return single;
        var indexes = Directory.GetFiles(directory, "*.safetensors.index.json");
        if (indexes.Length == 1) return indexes[0];
        var files = Directory.GetFiles(directory, "*.safetensors");
        if (files.Length == 1) return files[0];
        if (files.Length == 0 && indexes.Length == 0)
        {
            // Transformers' older layout: pytorch_model.bin or its sharded index.
            foreach (var name in new[] { "pytorch_model.bin.index.json", "pytorch_model.bin" })
                if (File.Exists(System.IO.Path.Combine(directory, name))) return System.IO.Path.Combine(directory, name);
        }
        throw new BadInputException(files.Length == 0 && indexes.Length == 0
            ? "directory holds no .safetensors file, safetensors index or pytorch_model.bin"
            : "directory holds several checkpoints; name the file", directory);
    }

    static TensorCheckpoint OpenSingle(string path)
    {
        using var file = SafetensorsFile.Open(path);
        var header = file.Header;
        var metadata = header.Metadata.ToDictionary(kv => kv.Key, kv => JsonSerializer.SerializeToElement(kv.Value));
        return new TensorCheckpoint(path, new[] { path }, header.Tensors.ToDictionary(t => t.Name, _ => path),
            header.Tensors, metadata);
    }

    static TensorCheckpoint OpenIndex(string indexPath)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(indexPath));
        }
        catch (JsonException e)
        {
            throw new BadInputException($"sharded index is not valid JSON: {e.Message}", indexPath);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var weightMap)
                || weightMap.ValueKind != JsonValueKind.Object)
                throw new BadInputException("sharded index has no 'weight_map' object", indexPath);

            string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
            var shardByTensor = new Dictionary<string, string>();
            foreach (var item in weightMap.EnumerateObject())
            {
                if (item.Value.ValueKind != JsonValueKind.String)
                    throw new BadInputException($"weight_map entry '{item.Name}' is not a file name", indexPath);
                if (shardByTensor.ContainsKey(item.Name))
                    throw new BadInputException($"weight_map names tensor '{item.Name}' twice", indexPath);
                shardByTensor[item.Name] = ResolveShard(directory, item.Value.GetString()!, item.Name, indexPath);
            }

            var entries = new List<TensorEntry>();
            var shards = shardByTensor.Values.Distinct().ToList();
            foreach (var shard in shards)
            {
                if (!File.Exists(shard))
                    throw new BadInputException($"shard file {System.IO.Path.GetFileName(shard)} named in the index is missing", indexPath);
                var held = IsPickled(shard)
                    ? PthFile.ReadTensors(shard).Select(kv => { var e = Entry(kv.Key, kv.Value); kv.Value.Dispose(); return e; }).ToList()
                    : SafetensorsFile.ReadHeader(shard).Tensors.ToList();
                var names = held.Select(t => t.Name).ToHashSet();
                foreach (var name in shardByTensor.Where(kv => kv.Value == shard).Select(kv => kv.Key))
                    if (!names.Contains(name))
                        throw new BadInputException($"index maps tensor '{name}' to this shard, but the shard does not hold it", shard);
                entries.AddRange(held.Where(t => shardByTensor.TryGetValue(t.Name, out var s) && s == shard));
            }

            var metadata = new Dictionary<string, JsonElement>();
            if (doc.RootElement.TryGetProperty("metadata", out var meta) && meta.ValueKind == JsonValueKind.Object)
                foreach (var item in meta.EnumerateObject())
                    metadata[item.Name] = item.Value.Clone();
            return new TensorCheckpoint(indexPath, shards, shardByTensor, entries, metadata);
        }
    }

    static string ResolveShard(string directory, string fileName, string tensor, string indexPath)
    {
        string full = System.IO.Path.GetFullPath(System.IO.Path.Combine(directory, fileName));
        if (!full.StartsWith(directory + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new BadInputException($"weight_map entry '{tensor}' points outside the checkpoint directory ('{fileName}')", indexPath);
        return full;
    }

    public TensorEntry GetEntry(string name) =>
        IsPickled(FileOf(name)) ? Entries.First(e => e.Name == name) : Shard(name).Header.Find(name)!;

    /// <summary>Reads one tensor (CPU, stored dtype; a copy the caller owns).</summary>
    public Tensor ReadTensor(string name) =>
        IsPickled(FileOf(name)) ? Pickled(FileOf(name))[name].clone() : Shard(name).ReadTensor(name);

    /// <summary>The shard file a tensor lives in.</summary>
    public string FileOf(string name) =>
        shardByTensor.TryGetValue(name, out var shard) ? shard : throw new BadInputException($"tensor '{name}' is not in the checkpoint", Path);

    SafetensorsFile Shard(string name)
    {
        string shard = FileOf(name);
        if (!openShards.TryGetValue(shard, out var file))
            openShards[shard] = file = SafetensorsFile.Open(shard);
        return file;
    }

    public void Dispose()
    {
        foreach (var file in openShards.Values) file.Dispose();
        openShards.Clear();
        foreach (var tensor in pickledShards.Values.SelectMany(t => t.Values)) tensor.Dispose();
        pickledShards.Clear();
    }
}
