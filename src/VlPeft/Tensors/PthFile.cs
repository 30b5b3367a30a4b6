using System.Collections;
using System.IO.Compression;
using Razorvine.Pickle;
using Razorvine.Pickle.Objects;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Tensors;

/// <summary>
/// Reads <c>torch.save</c> files (the zip format of PyTorch ≥ 1.6: <c>&lt;name&gt;/data.pkl</c> + one entry per storage
/// under <c>&lt;name&gt;/data/</c>) without running any code from the file: the pickle is interpreted by Razorvine, which
/// builds unknown Python classes as plain dictionaries instead of calling them, and tensors are rebuilt here from
/// their storage bytes after checking sizes, strides and offsets against the storage. A malformed or hostile file
/// gives one <see cref="BadInputException"/> naming it (a pickle that calls a function with arguments, such as
/// os.system, is refused that way). The legacy format of PyTorch &lt; 1.6 (a row of pickles, then the storages' bytes)
/// is read the same way (<see cref="LegacyTorchSave"/>).
/// </summary>
public static class PthFile
{
    static PthFile()
    {
        Unpickler.registerConstructor("collections", "OrderedDict", new DictionaryConstructor());
        Unpickler.registerConstructor("torch._utils", "_rebuild_tensor_v2", new TensorConstructor());
        Unpickler.registerConstructor("torch._utils", "_rebuild_parameter", new ParameterConstructor());
    }

    /// <summary>
    /// Every tensor in the file by its dotted path: a state dict's keys, nested dictionaries joined with dots
    /// (LaVIN's <c>{"model": {...}}</c> gives <c>model.&lt;key&gt;</c>). Non-tensor values are skipped.
    /// </summary>
    public static Dictionary<string, Tensor> ReadTensors(string path)
    {
        var root = ReadObject(path);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        Collect(root, "", tensors);
        return tensors;
    }

    static void Collect(object? node, string prefix, Dictionary<string, Tensor> into)
    {
        switch (node)
        {
            case Tensor t:
                into[prefix] = t;
                break;
            case IDictionary dict:
                foreach (DictionaryEntry e in dict)
                    Collect(e.Value, prefix.Length == 0 ? e.Key.ToString()! : $"{prefix}.{e.Key}", into);
                break;
        }
    }

    /// <summary>The unpickled object: dictionaries (IDictionary), lists, strings, numbers and tensors.</summary>
    public static object? ReadObject(string path)
    {
        if (!File.Exists(path)) throw new BadInputException("checkpoint file not found", path);
        if (LegacyTorchSave.Recognizes(path)) return LegacyTorchSave.Read(path);
        try
        {
            using var archive = ZipFile.OpenRead(path);
            return ReadArchive(archive, path);
        }
        catch (InvalidDataException e)
        {
            throw new BadInputException($"not a readable torch.save file: neither the zip format ({e.Message}) nor the legacy pre-1.6 format", path, e);
        }
    }

    const long MaxPickleBytes = 256L << 20;

    /// <summary>Exceptions a hostile or damaged pickle can raise inside Razorvine: each becomes one clear error.</summary>
    internal static bool IsPickleFailure(Exception e) => e is PickleException or InvalidCastException or IOException or IndexOutOfRangeException or ArgumentException
        or OverflowException or NullReferenceException or KeyNotFoundException or FormatException or InvalidOperationException;

    static object? ReadArchive(ZipArchive archive, string path)
    {
        var pickle = archive.Entries.FirstOrDefault(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1)
            ?? throw new BadInputException("no <name>/data.pkl entry: not a torch.save archive", path);
        string root = pickle.FullName[..^"data.pkl".Length];
        if (archive.GetEntry(root + "byteorder") is { } order && new StreamReader(order.Open()).ReadToEnd().Trim() != "little")
            throw new BadInputException("the checkpoint was saved big-endian; only little-endian files are read", path);
        // A state dict's pickle is small; the bound keeps a lying size field from allocating for it.
        if (pickle.Length > MaxPickleBytes) throw new BadInputException($"{pickle.FullName} claims {pickle.Length:N0} bytes; a checkpoint's pickle is far smaller", path);
        using var unpickler = new StorageUnpickler(archive, root, path);
        try
        {
            var bytes = new byte[pickle.Length];
            using (var stream = pickle.Open()) stream.ReadExactly(bytes);
            // From memory, Razorvine slices lengths out of the array (a corrupt length is an error, not an allocation).
            return unpickler.loads(bytes);
        }
        catch (BadInputException) { throw; }
        catch (Exception e) when (IsPickleFailure(e))
        {
            throw new BadInputException($"the pickle in {pickle.FullName} is malformed or uses something a checkpoint should not ({e.Message})", path, e);
        }
    }

    /// <summary>The storage a persistent id names, read once per key: ('storage', storage_type, key, location, numel).</summary>
    sealed class StorageUnpickler : Unpickler
    {
        readonly ZipArchive archive;
        readonly string root, file;
        readonly Dictionary<string, Storage> storages = new();

        public StorageUnpickler(ZipArchive archive, string root, string file)
        {
            this.archive = archive;
            this.root = root;
            this.file = file;
        }

        protected override object persistentLoad(object pid)
        {
            if (pid is not object[] { Length: >= 5 } id || id[0] as string != "storage" || id[1] is not ClassDictConstructor type || id[2] is not string key)
                throw new BadInputException("a persistent id is not a torch storage reference", file);
            if (storages.TryGetValue(key, out var known)) return known;
            var dtype = StorageType(type.name) ?? throw new BadInputException($"storage type {type.module}.{type.name} is not supported", file);
            long numel = Convert.ToInt64(id[4]);
            var entry = archive.GetEntry($"{root}data/{key}") ?? throw new BadInputException($"storage '{key}' has no entry {root}data/{key}", file);
            long bytes = numel * ElementSize(dtype);
            if (numel < 0 || entry.Length != bytes)
                throw new BadInputException($"storage '{key}' should hold {numel} × {ElementSize(dtype)} bytes, its entry has {entry.Length}", file);
            using var stream = entry.Open();
            return storages[key] = new Storage(key, numel, ReadFlat(stream, numel, dtype), file);
        }
    }

    /// <summary>numel elements straight from the stream into native memory, in slices (a span is int-indexed).</summary>
    internal static Tensor ReadFlat(Stream stream, long numel, ScalarType dtype)
    {
        var flat = torch.empty(numel, dtype: dtype).DetachFromDisposeScope();
        long chunk = Math.Max(1, (1L << 30) / ElementSize(dtype));
        for (long start = 0; start < numel; start += chunk)
        {
            using var slice = flat.narrow(0, start, Math.Min(chunk, numel - start));
            stream.ReadExactly(slice.bytes);
        }
        return flat;
    }

    /// <summary>A storage as a flat tensor of its element type; tensors are views into it.</summary>
    internal sealed record Storage(string Key, long Numel, Tensor Flat, string File);

    internal static ScalarType? StorageType(string name) => name switch
    {
        "FloatStorage" => ScalarType.Float32,
        "DoubleStorage" => ScalarType.Float64,
        "HalfStorage" => ScalarType.Float16,
        "BFloat16Storage" => ScalarType.BFloat16,
        "LongStorage" => ScalarType.Int64,
        "IntStorage" => ScalarType.Int32,
        "ShortStorage" => ScalarType.Int16,
        "CharStorage" => ScalarType.Int8,
        "ByteStorage" => ScalarType.Byte,
        "BoolStorage" => ScalarType.Bool,
        _ => null,
    };

    internal static long ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    /// <summary>torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]).</summary>
    sealed class TensorConstructor : IObjectConstructor
    {
        public object construct(object[] args)
        {
            if (args.Length < 4 || args[0] is not Storage storage || args[2] is not object[] sizeTuple || args[3] is not object[] strideTuple)
                throw new PickleException("_rebuild_tensor_v2 called with unexpected arguments");
            long offset = Convert.ToInt64(args[1]);
            var size = sizeTuple.Select(Convert.ToInt64).ToArray();
            var stride = strideTuple.Select(Convert.ToInt64).ToArray();
            if (size.Length != stride.Length || size.Any(s => s < 0) || stride.Any(s => s < 0) || offset < 0)
                throw new BadInputException($"a tensor on storage '{storage.Key}' has an invalid size [{string.Join(", ", size)}], stride or offset {offset}", storage.File);
            // The last element the view reads must lie inside the storage.
            long last = size.Any(s => s == 0) ? offset - 1 : offset + size.Zip(stride, (s, st) => (s - 1) * st).Sum();
            if (last >= storage.Numel)
                throw new BadInputException($"a tensor of size [{string.Join(", ", size)}] at offset {offset} reads past storage '{storage.Key}' ({storage.Numel} elements)", storage.File);
            if (size.Any(s => s == 0)) return torch.empty(size, dtype: storage.Flat.dtype);
            var view = storage.Flat.as_strided(size, stride, offset);
            // A tensor that is its whole storage, in order (Meta and LaVIN checkpoints), shares it; other views get their own copy.
            bool whole = offset == 0 && view.numel() == storage.Numel && view.is_contiguous();
            return whole ? view : view.contiguous().clone();
        }
    }

    /// <summary>torch._utils._rebuild_parameter(data, requires_grad, backward_hooks): the tensor itself.</summary>
    sealed class ParameterConstructor : IObjectConstructor
    {
        public object construct(object[] args) => args.Length >= 1 && args[0] is Tensor t ? t : throw new PickleException("_rebuild_parameter without a tensor");
    }

    /// <summary>collections.OrderedDict() → the Hashtable Razorvine's SETITEMS fills (a state dict's order carries no meaning).</summary>
    sealed class DictionaryConstructor : IObjectConstructor
    {
        public object construct(object[] args) => new Hashtable();
    }
}
