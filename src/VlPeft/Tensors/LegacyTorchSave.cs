using System.Collections;
using System.Numerics;
using Razorvine.Pickle;
using Razorvine.Pickle.Objects;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Tensors;

/// <summary>
/// torch.save's legacy format (PyTorch &lt; 1.6, <c>_legacy_save</c>): pickles of the magic number, the protocol version
/// (1001) and sys_info; the object pickle, whose persistent ids are ('storage', type, key, location, numel, view_metadata);
/// a pickle of the storage keys; then each storage as an int64 element count and its raw little-endian bytes. The object
/// pickle runs twice: once on the meta device to find where it ends and what it references, then over the storages read.
/// Nothing in the file is executed (the same Razorvine allow-list as the zip format).
/// </summary>
static class LegacyTorchSave
{
    static readonly BigInteger Magic = BigInteger.Parse("119547037146038801333356");   // 0x1950a86a20f9469cfc6c

    /// <summary>The file starts as a legacy torch.save does: pickle protocol 2, then LONG1 of 10 bytes (the magic number).</summary>
    public static bool Recognizes(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> head = stackalloc byte[4];
        return stream.Read(head) == 4 && head[0] == 0x80 && head[1] == 2 && head[2] == 0x8a && head[3] == 10;
    }

    /// <summary>The pickles' prefix is read into memory, growing to at most this (a checkpoint's pickles are far smaller).</summary>
    const long MaxPickleBytes = 256L << 20;

    public static object? Read(string path)
    {
        using var stream = File.OpenRead(path);
        try
        {
            // The five pickles come first: find their extents in a prefix of the file, then unpickle each from memory.
            byte[] prefix = Array.Empty<byte>();
            var extents = new List<(long Start, long End)>();
            for (long size = Math.Min(1L << 20, stream.Length); extents.Count < 5; size = Math.Min(size * 2, Math.Min(stream.Length, MaxPickleBytes)))
            {
                if (prefix.Length < size)
                {
                    prefix = new byte[size];
                    stream.Position = 0;
                    stream.ReadExactly(prefix);
                }
                extents.Clear();
                long at = 0;
                while (extents.Count < 5 && PickleExtent.End(prefix, at) is var end && end > 0)
                {
                    extents.Add((at, end));
                    at = end;
                }
                if (extents.Count < 5 && (prefix.Length == stream.Length || prefix.Length >= MaxPickleBytes))
                    throw new BadInputException(prefix.Length == stream.Length ? "the file ends inside its pickles (truncated legacy torch.save)"
                        : $"the legacy torch.save pickles exceed {MaxPickleBytes >> 20} MB; a checkpoint's are far smaller", path);
            }
            object? Load(int i, Unpickler? with = null)
            {
                using var unpickler = with ?? new Unpickler();
                return unpickler.loads(prefix[(int)extents[i].Start..(int)extents[i].End]);
            }
            if (Load(0) is not BigInteger magic || magic != Magic) throw new BadInputException("not a torch.save file (wrong magic number)", path);
            if (Convert.ToInt64(Load(1)) != 1001) throw new BadInputException("unknown legacy torch.save protocol version (expected 1001)", path);
            if (Load(2) is IDictionary info && info["little_endian"] is false)
                throw new BadInputException("the checkpoint was saved big-endian; only little-endian files are read", path);
            var dry = new LegacyUnpickler(path, null);
            Load(3, dry);
            if (Load(4) is not IList keys) throw new BadInputException("the storage key list is missing after the object pickle", path);
            stream.Position = extents[4].End;
            var storages = new Dictionary<string, PthFile.Storage>();
            var count = new byte[8];
            foreach (var key in keys.Cast<object>().Select(k => k?.ToString() ?? ""))
            {
                var (dtype, declared) = dry.Declared.TryGetValue(key, out var d) ? d
                    : throw new BadInputException($"storage '{key}' is listed but no tensor references it", path);
                stream.ReadExactly(count);
                long numel = BitConverter.ToInt64(count);
                if (numel != declared || numel < 0 || numel > (stream.Length - stream.Position) / PthFile.ElementSize(dtype))
                    throw new BadInputException($"storage '{key}' should hold {declared} elements, its record says {numel} with {stream.Length - stream.Position} bytes left", path);
                storages[key] = new PthFile.Storage(key, numel, PthFile.ReadFlat(stream, numel, dtype), path);
            }
            if (dry.Declared.Keys.FirstOrDefault(k => !storages.ContainsKey(k)) is string absent)
                throw new BadInputException($"storage '{absent}' is referenced but its bytes are not in the file", path);
            return Load(3, new LegacyUnpickler(path, storages));
        }
        catch (BadInputException) { throw; }
        catch (EndOfStreamException e) { throw new BadInputException("the file ends early (truncated legacy torch.save)", path, e); }
        catch (Exception e) when (PthFile.IsPickleFailure(e))
        {
            throw new BadInputException($"the legacy torch.save pickle is malformed or uses something a checkpoint should not ({e.Message})", path, e);
        }
    }

    /// <summary>Resolves storage ids: on the meta device (the dry pass, recording each key's type and size) or to the storages read.</summary>
    sealed class LegacyUnpickler : Unpickler
    {
        readonly string file;
        readonly Dictionary<string, PthFile.Storage>? storages;
        readonly Dictionary<string, PthFile.Storage> meta = new();

        public LegacyUnpickler(string file, Dictionary<string, PthFile.Storage>? storages)
        {
            this.file = file;
            this.storages = storages;
        }

        public Dictionary<string, (ScalarType Type, long Numel)> Declared { get; } = new();

        protected override object persistentLoad(object pid)
        {
            if (pid is not object[] { Length: >= 5 } id || id[0] as string != "storage" || id[1] is not ClassDictConstructor type || id[2] is not string key)
                throw new BadInputException("a persistent id is not a torch storage reference", file);
            var dtype = PthFile.StorageType(type.name) ?? throw new BadInputException($"storage type {type.module}.{type.name} is not supported", file);
            long numel = Convert.ToInt64(id[4]);
            if (numel < 0) throw new BadInputException($"storage '{key}' declares {numel} elements", file);
            Declared.TryAdd(key, (dtype, numel));
            var root = storages is not null
                ? storages.TryGetValue(key, out var s) ? s : throw new BadInputException($"storage '{key}' has no bytes in the file", file)
                : meta.TryGetValue(key, out var m) ? m : meta[key] = new PthFile.Storage(key, numel, torch.empty(numel, dtype: dtype, device: torch.META), file);
            // view_metadata (view_key, offset, size): a slice of the root storage, shared by the tensors that name it.
            if (id.Length >= 6 && id[5] is object[] { Length: 3 } view)
            {
                long offset = Convert.ToInt64(view[1]), size = Convert.ToInt64(view[2]);
                if (offset < 0 || size < 0 || offset + size > root.Numel)
                    throw new BadInputException($"view '{view[0]}' of storage '{key}' ({offset} + {size}) lies outside its {root.Numel} elements", file);
                return new PthFile.Storage(view[0]?.ToString() ?? key, size, root.Flat.narrow(0, offset, size), file);
            }
            return root;
        }
    }
}
