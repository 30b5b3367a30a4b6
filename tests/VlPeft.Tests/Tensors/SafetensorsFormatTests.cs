using System.Text;
using System.Text.Json;
using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Tests.Tensors;

public class SafetensorsFormatTests
{
    // Raw little-endian bit patterns per dtype, chosen to hit edge values: ±0, subnormals, max,
    // ±Inf, and NaNs with non-default payloads (which must survive bit for bit).
    public static TheoryData<string, byte[]> EdgeValues() => new()
    {
        { "F64", Bits64(0x0000000000000000, 0x8000000000000000, 0x0000000000000001, 0x7FEFFFFFFFFFFFFF, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000001, 0x7FF4000000000123) },
        { "F32", Bits32(0x00000000, 0x80000000, 0x00000001, 0x7F7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00001, 0x7FA12345, 0xFFFFFFFF) },
        { "F16", Bits16(0x0000, 0x8000, 0x0001, 0x03FF, 0x7BFF, 0x7C00, 0xFC00, 0x7E01, 0x7D55) },
        { "BF16", Bits16(0x0000, 0x8000, 0x0001, 0x007F, 0x7F7F, 0x7F80, 0xFF80, 0x7FC1, 0x7F81, 0x3F80) },
        { "I64", Bits64(0, 1, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000) },
        { "I32", Bits32(0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000) },
        { "I16", Bits16(0, 1, 0xFFFF, 0x7FFF, 0x8000) },
        { "I8", new byte[] { 0, 1, 0xFF, 0x7F, 0x80 } },
        { "U8", new byte[] { 0, 1, 0xFF, 0x7F, 0x80 } },
        { "BOOL", new byte[] { 0, 1, 1, 0 } },
    };

    [Theory]
    [MemberData(nameof(EdgeValues))]
    public void Every_dtype_round_trips_bit_exactly(string dtype, byte[] raw)
    {
        using var dir = new TempDirectory();
        int size = SafetensorsDType.BitsPerElement(dtype) / 8;
        using var tensor = torch.empty(new long[] { raw.Length / size }, SafetensorsDType.ToTorch(dtype));
        tensor.bytes = raw;

        string path = dir.File("t.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["x"] = tensor });
        using var file = SafetensorsFile.Open(path);
        using var back = file.ReadTensor("x");

        Assert.Equal(dtype, file.Header.Find("x")!.DType);
        Assert.Equal(SafetensorsDType.ToTorch(dtype), back.dtype);
        Assert.Equal(raw, back.bytes.ToArray());
        // The data region of the file holds exactly the raw bytes (little-endian, no reordering).
        var fileBytes = File.ReadAllBytes(path);
        Assert.Equal(raw, fileBytes[^raw.Length..]);
    }

    [Fact]
    public void Reads_a_file_built_by_hand_from_the_format_spec()
    {
        using var dir = new TempDirectory();
        // b before a in the data buffer, header order a then b: readers must follow the offsets.
        var data = SafetensorsBytes.Floats(5f, 6f).Concat(SafetensorsBytes.Floats(1f, 2f, 3f, 4f, 5f, 6f)).ToArray();
        string header = "{\"__metadata__\":{\"format\":\"pt\"},"
            + "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]},"
            + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[32,36]},"
            + "\"z\":{\"dtype\":\"I64\",\"shape\":[0,4],\"data_offsets\":[36,36]}}";
        data = data.Concat(SafetensorsBytes.Floats(7.5f)).ToArray();
        string path = dir.File("hand.safetensors");
        File.WriteAllBytes(path, SafetensorsBytes.Build(header, data));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Header.Metadata["format"]);
        using var a = file.ReadTensor("a");
        Assert.Equal(new long[] { 2, 3 }, a.shape);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, a.data<float>().ToArray());
        using var b = file.ReadTensor("b");
        Assert.Equal(new float[] { 5, 6 }, b.data<float>().ToArray());
        using var s = file.ReadTensor("s");
        Assert.Empty(s.shape);
        Assert.Equal(7.5f, s.item<float>());
        using var z = file.ReadTensor("z");
        Assert.Equal(new long[] { 0, 4 }, z.shape);
    }

    [Fact]
    public void Writer_output_follows_the_format_rules()
    {
        using var dir = new TempDirectory();
        string path = dir.File("w.safetensors");
        using var a = torch.arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using var b = torch.tensor(new short[] { 1, 2, 3 }).to(ScalarType.BFloat16);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["b"] = b, ["a"] = a },
            new Dictionary<string, string> { ["format"] = "pt" });

        var bytes = File.ReadAllBytes(path);
        long n = (long)BitConverter.ToUInt64(bytes, 0);
        Assert.Equal(0, n % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.StartsWith("{", header);
        string trimmed = header.TrimEnd(' ');
        Assert.EndsWith("}", trimmed);
        Assert.True(header.Length - trimmed.Length < 8, "padding is fewer than 8 spaces");
        using var doc = JsonDocument.Parse(header);
        var offsets = doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
            .Select(p => (p.Value.GetProperty("data_offsets")[0].GetInt64(), p.Value.GetProperty("data_offsets")[1].GetInt64()))
            .OrderBy(o => o.Item1).ToList();
        Assert.Equal(0, offsets[0].Item1);
        for (int i = 1; i < offsets.Count; i++) Assert.Equal(offsets[i - 1].Item2, offsets[i].Item1);
        Assert.Equal(bytes.Length, 8 + n + offsets[^1].Item2);
        Assert.Equal("pt", doc.RootElement.GetProperty("__metadata__").GetProperty("format").GetString());
        Assert.Equal("BF16", doc.RootElement.GetProperty("b").GetProperty("dtype").GetString());
    }

    [Fact]
    public void Sliced_reads_and_writes_match_whole_ones()
    {
        // Tensors over 2 GiB move in slices; a tiny slice size exercises the same path on small data.
        using var dir = new TempDirectory();
        string path = dir.File("sliced.safetensors");
        using var x = torch.randn(37, 11, dtype: ScalarType.Float64);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["x"] = x }, null, chunkBytes: 24);
        using var sliced = SafetensorsFile.Open(path, chunkBytes: 40);
        using var back = sliced.ReadTensor("x");
        Assert.True(torch.equal(x, back).all().item<bool>());
    }

    [Fact]
    public void Reads_one_tensor_without_reading_the_others()
    {
        using var dir = new TempDirectory();
        string path = dir.File("two.safetensors");
        using var a = torch.ones(4);
        using var b = torch.full(3, 2.0f);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b });
        // Corrupting a's bytes must not affect reading b: proof that only b's range is read.
        var bytes = File.ReadAllBytes(path);
        long n = (long)BitConverter.ToUInt64(bytes, 0);
        using (var doc = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n)))
        {
            var range = doc.RootElement.GetProperty("a").GetProperty("data_offsets");
            for (long i = range[0].GetInt64(); i < range[1].GetInt64(); i++) bytes[8 + n + i] = 0xFF;
        }
        File.WriteAllBytes(path, bytes);
        using var file = SafetensorsFile.Open(path);
        using var back = file.ReadTensor("b");
        Assert.Equal(new float[] { 2, 2, 2 }, back.data<float>().ToArray());
    }

    static byte[] Bits64(params ulong[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
    static byte[] Bits32(params uint[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
    static byte[] Bits16(params ushort[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
}
