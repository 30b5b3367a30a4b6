using System.IO.Compression;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Tests.Tensors;

/// <summary>
/// Writes torch.save's zip format opcode by opcode (pickle protocol 2), written from PyTorch's serialization layout and
/// the pickle spec, sharing nothing with the reader under test. Values are tensors (optionally views into a named storage),
/// nested dictionaries, ints and strings; <see cref="Raw"/> injects arbitrary pickle bytes.
/// </summary>
sealed class TorchSaveWriter
{
    readonly Dictionary<string, (Tensor Data, string Type)> storages = new();
    bool legacy;
    public byte[]? RawPickle { get; set; }

    /// <summary>A view into a storage: offset, size and stride as torch would record them.</summary>
    public sealed record View(string Storage, long Offset, long[] Size, long[] Stride);

    /// <summary>Pickle bytes that construct a value.</summary>
    public sealed record Raw(byte[] Bytes);

    public void AddStorage(string key, Tensor contiguous) => storages[key] = (contiguous.contiguous(), StorageName(contiguous.dtype));

    /// <summary>A flat state dict, one storage per tensor (keys "sd0", "sd1", …): the name → view map to put in the root.</summary>
    public Dictionary<string, object> AddStateDict(IEnumerable<(string Name, Tensor Value)> tensors)
    {
        var views = new Dictionary<string, object>();
        foreach (var (name, value) in tensors)
        {
            string key = $"sd{storages.Count}";
            var v = value.detach().contiguous();
            AddStorage(key, v);
            var strides = v.shape.Select((_, i) => v.shape.Skip(i + 1).Aggregate(1L, (a, b) => a * b)).ToArray();
            views[name] = new View(key, 0, v.shape, strides);
        }
        return views;
    }

    /// <summary>Pickle bytes that call os.system(command) when unpickled by Python.</summary>
    public static Raw SystemCall(string command)
    {
        var call = new MemoryStream();
        Global(call, "os", "system");
        call.WriteByte((byte)'(');
        Unicode(call, command);
        call.WriteByte((byte)'t');
        call.WriteByte((byte)'R');
        return new Raw(call.ToArray());
    }

    static string StorageName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "FloatStorage", ScalarType.BFloat16 => "BFloat16Storage", ScalarType.Float16 => "HalfStorage",
        ScalarType.Int64 => "LongStorage", _ => throw new NotSupportedException(t.ToString()),
    };

    public void Write(string path, object root, Func<string, byte[], byte[]>? corruptEntry = null)
    {
        var pickle = new MemoryStream();
        pickle.Write(new byte[] { 0x80, 2 });
        Value(pickle, root);
        pickle.WriteByte((byte)'.');
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        void Entry(string name, byte[] bytes)
        {
            using var s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
            s.Write(corruptEntry?.Invoke(name, bytes) ?? bytes);
        }
        Entry("archive/data.pkl", RawPickle ?? pickle.ToArray());
        Entry("archive/byteorder", Encoding.ASCII.GetBytes("little"));
        Entry("archive/version", Encoding.ASCII.GetBytes("3\n"));
        foreach (var (key, (data, _)) in storages)
        {
            Entry($"archive/data/{key}", data.bytes.ToArray());       // the storage's raw little-endian bytes
        }
    }

    /// <summary>
    /// The legacy (PyTorch &lt; 1.6) layout: pickles of the magic number (LONG1), protocol 1001 and sys_info, the object
    /// pickle (persistent ids with a sixth, view_metadata = None), the storage key list, then per storage an int64 element
    /// count and its bytes. <paramref name="corrupt"/> edits the finished bytes.
    /// </summary>
    public void WriteLegacy(string path, object root, Func<byte[], byte[]>? corrupt = null)
    {
        legacy = true;
        var file = new MemoryStream();
        void Pickle(Action<MemoryStream> body)
        {
            file.Write(new byte[] { 0x80, 2 });
            body(file);
            file.WriteByte((byte)'.');
        }
        Pickle(s => { s.WriteByte(0x8a); s.WriteByte(10); s.Write(Convert.FromHexString("6cfc9c46f9206aa85019")); });
        Pickle(s => Value(s, 1001));
        Pickle(s =>
        {
            s.WriteByte((byte)'}');
            s.WriteByte((byte)'(');
            Unicode(s, "protocol_version"); Value(s, 1001);
            Unicode(s, "little_endian"); s.WriteByte(0x88);                 // NEWTRUE
            s.WriteByte((byte)'u');
        });
        Pickle(s => Value(s, root));
        Pickle(s =>
        {
            s.WriteByte((byte)']');
            s.WriteByte((byte)'(');
            foreach (var key in storages.Keys) Unicode(s, key);
            s.WriteByte((byte)'e');
        });
        foreach (var (data, _) in storages.Values)
        {
            file.Write(BitConverter.GetBytes(data.numel()));
            file.Write(data.bytes);
        }
        File.WriteAllBytes(path, corrupt?.Invoke(file.ToArray()) ?? file.ToArray());
    }

    void Value(MemoryStream s, object value)
    {
        switch (value)
        {
            case Raw raw: s.Write(raw.Bytes); break;
            case string text: Unicode(s, text); break;
            case int i: s.WriteByte((byte)'J'); s.Write(BitConverter.GetBytes(i)); break;
            case View v: TensorView(s, v); break;
            case IDictionary<string, object> dict:
                // collections.OrderedDict() then SETITEMS, as torch writes state dicts.
                Global(s, "collections", "OrderedDict");
                s.WriteByte((byte)')');
                s.WriteByte((byte)'R');
                s.WriteByte((byte)'(');
                foreach (var (k, v) in dict)
                {
                    Unicode(s, k);
                    Value(s, v);
                }
                s.WriteByte((byte)'u');
                break;
            default: throw new NotSupportedException(value.GetType().Name);
        }
    }

    void TensorView(MemoryStream s, View v)
    {
        var (data, type) = storages[v.Storage];
        Global(s, "torch._utils", "_rebuild_tensor_v2");
        s.WriteByte((byte)'(');
        s.WriteByte((byte)'(');                                   // persistent id ('storage', type, key, location, numel)
        Unicode(s, "storage");
        Global(s, "torch", type);
        Unicode(s, v.Storage);
        Unicode(s, "cpu");
        Value(s, (int)data.numel());
        if (legacy) s.WriteByte((byte)'N');                      // view_metadata: None
        s.WriteByte((byte)'t');
        s.WriteByte((byte)'Q');                                   // BINPERSID
        Value(s, (int)v.Offset);
        Tuple(s, v.Size);
        Tuple(s, v.Stride);
        s.WriteByte(0x89);                                        // NEWFALSE: requires_grad
        Global(s, "collections", "OrderedDict");                  // backward_hooks
        s.WriteByte((byte)')');
        s.WriteByte((byte)'R');
        s.WriteByte((byte)'t');
        s.WriteByte((byte)'R');
    }

    void Tuple(MemoryStream s, long[] items)
    {
        s.WriteByte((byte)'(');
        foreach (var i in items) Value(s, (int)i);
        s.WriteByte((byte)'t');
    }

    public static void Global(MemoryStream s, string module, string name) => s.Write(Encoding.ASCII.GetBytes($"c{module}\n{name}\n"));

    public static void Unicode(MemoryStream s, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        s.WriteByte((byte)'X');
        s.Write(BitConverter.GetBytes(bytes.Length));
        s.Write(bytes);
    }
}
