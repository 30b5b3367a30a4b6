using System.Text;
using VlPeft.Tensors;

namespace VlPeft.Tests.Tensors;

/// <summary>Untrusted files: every malformed case gives a BadInputException naming the file and the problem.</summary>
public class SafetensorsValidationTests
{
    static readonly byte[] EightBytes = SafetensorsBytes.Floats(1f, 2f);

    public static TheoryData<string, byte[], string> MalformedFiles() => new()
    {
        { "shorter than the length field", new byte[] { 1, 2, 3 }, "shorter than the 8-byte header length" },
        { "header length beyond the file", Forged(1000, "{}"), "larger than the file" },
        { "forged huge header length", Forged(ulong.MaxValue / 2, "{}"), "exceeds the format's limit" },
        { "header not UTF-8", WithHeaderBytes(new byte[] { (byte)'{', 0xC3, 0x28, (byte)'}' }), "not valid UTF-8" },
        { "header not JSON", SafetensorsBytes.Build("{\"a\": [1, ", Array.Empty<byte>()), "not valid JSON" },
        { "header not an object", SafetensorsBytes.Build("[1,2]", Array.Empty<byte>()), "does not start with '{'" },
        { "unknown dtype", File1("{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}"), "unknown dtype 'F128'" },
        { "negative shape", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}"), "not a non-negative integer" },
        { "fractional shape", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}"), "not a non-negative integer" },
        { "absurd shape", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}"), "absurdly large" },
        { "dtype x shape != bytes", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}"), "needs 12 bytes but data_offsets span 8" },
        { "offsets outside data", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"), "outside the data buffer" },
        { "offsets reversed", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}"), "are not 0 <= begin <= end" },
        { "overlapping tensors", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"), "overlap" },
        { "hole in data", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"), "has a hole" },
        { "trailing bytes", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), "cover only 4" },
        { "duplicate names", File1("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"), "duplicate tensor name 'a'" },
        { "missing dtype", File1("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}"), "missing string field 'dtype'" },
        { "bad metadata", File1("{\"__metadata__\":{\"n\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"), "is not a string" },
    };

    [Theory]
    [MemberData(nameof(MalformedFiles))]
    public void Malformed_file_gives_a_clear_error(string why, byte[] bytes, string expected)
    {
        using var dir = new TempDirectory();
        string path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<BadInputException>(() => SafetensorsFile.Open(path));
        Assert.Contains(expected, e.Message);
        Assert.Equal(path, e.File);
        Assert.False(string.IsNullOrEmpty(why));
    }

    [Fact]
    public void Missing_file_names_the_path()
    {
        var e = Assert.Throws<BadInputException>(() => SafetensorsFile.Open("/nonexistent/x.safetensors"));
        Assert.Equal("/nonexistent/x.safetensors", e.File);
    }

    [Fact]
    public void Unloadable_but_valid_dtype_is_listed_and_refused_on_read()
    {
        using var dir = new TempDirectory();
        string path = dir.File("f8.safetensors");
        File.WriteAllBytes(path, File1("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}"));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("F8_E4M3", file.Header.Tensors[0].DType);
        var e = Assert.Throws<BadInputException>(() => file.ReadTensor("a"));
        Assert.Contains("F8_E4M3", e.Message);
    }

    static byte[] File1(string header) => SafetensorsBytes.Build(header, EightBytes);

    static byte[] Forged(ulong length, string header)
    {
        var bytes = SafetensorsBytes.Build(header, EightBytes);
        BitConverter.GetBytes(length).CopyTo(bytes, 0);
        return bytes;
    }

    static byte[] WithHeaderBytes(byte[] header)
    {
        var bytes = new byte[8 + header.Length];
        BitConverter.GetBytes((ulong)header.Length).CopyTo(bytes, 0);
        header.CopyTo(bytes, 8);
        return bytes;
    }
}
