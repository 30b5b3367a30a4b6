using System.Text.Json;
using static TorchSharp.torch;

namespace VlPeft.Tensors;

/// <summary>
/// A set of named tensors on disk: one safetensors file, or a sharded checkpoint described by a
/// Transformers <c>*.safetensors.index.json</c> (weight_map: name → shard file). Tensors are read
/// one by one, so a loader can stream a 7B checkpoint without holding two copies.
/// </summary>
public sealed class TensorCheckpoint : IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";
    public const string SingleFileName = "model.safetensors";

    readonly Dictionary<string, string> shardByTensor;
    readonly Dictionary<string, SafetensorsFile> openShards = new();

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
    public IReadOnlyList<TensorEntry> Entries { get; }
    /// <summary>The single file's <c>__metadata__</c>, or the index's <c>metadata</c> object.</summary>
    public IReadOnlyDictionary<string, JsonElement> Metadata { get; }

    public bool Contains(string name) => shardByTensor.ContainsKey(name);

    /// <summary>Opens a .safetensors file, an index JSON, or a directory holding either.</summary>
    public static TensorCheckpoint Open(string path)
    {
        if (Directory.Exists(path)) return Open(FindInDirectory(path));
        if (!File.Exists(path)) throw new BadInputException("no such file or directory", path);
        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(path) : OpenSingle(path);
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
        throw new BadInputException(files.Length == 0 && indexes.Length == 0
            ? "directory holds no .safetensors file or safetensors index"
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
                var header = SafetensorsFile.ReadHeader(shard);
                foreach (var name in shardByTensor.Where(kv => kv.Value == shard).Select(kv => kv.Key))
                    if (!header.Contains(name))
                        throw new BadInputException($"index maps tensor '{name}' to this shard, but the shard does not hold it", shard);
                entries.AddRange(header.Tensors.Where(t => shardByTensor.TryGetValue(t.Name, out var s) && s == shard));
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
        Shard(name).Header.Find(name)!;

    /// <summary>Reads one tensor (CPU, stored dtype).</summary>
    public Tensor ReadTensor(string name) => Shard(name).ReadTensor(name);

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
    }
}
