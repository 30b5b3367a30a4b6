using TorchSharp;
using VlPeft.Tensors;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Tensors;

public class PthFileTests
{
    [Fact]
    public void State_dicts_with_views_dtypes_and_nesting_read_back_exactly()
    {
        using var dir = new TempDirectory();
        var writer = new TorchSaveWriter();
        var matrix = torch.arange(12, dtype: ScalarType.Float32).view(3, 4);
        writer.AddStorage("0", matrix);
        writer.AddStorage("1", torch.tensor(new float[] { 1.5f, -2.25f, 3 }).to(ScalarType.BFloat16));
        writer.Write(dir.File("ckpt.pth"), new Dictionary<string, object>
        {
            ["model"] = new Dictionary<string, object>
            {
                ["w"] = new TorchSaveWriter.View("0", 0, new long[] { 3, 4 }, new long[] { 4, 1 }),
                ["w_t"] = new TorchSaveWriter.View("0", 0, new long[] { 4, 3 }, new long[] { 1, 4 }),       // a transposed view of the same storage
                ["row1"] = new TorchSaveWriter.View("0", 4, new long[] { 4 }, new long[] { 1 }),           // offset into it
                ["b"] = new TorchSaveWriter.View("1", 0, new long[] { 3 }, new long[] { 1 }),
            },
            ["epoch"] = 19,
            ["note"] = "not a tensor",
        });
        var tensors = PthFile.ReadTensors(dir.File("ckpt.pth"));
        Assert.Equal(new[] { "model.b", "model.row1", "model.w", "model.w_t" }, tensors.Keys.OrderBy(k => k, StringComparer.Ordinal));
        TensorAssert.Close(matrix, tensors["model.w"], 0);
        TensorAssert.Close(matrix.t(), tensors["model.w_t"], 0);
        TensorAssert.Close(matrix[1], tensors["model.row1"], 0);
        Assert.Equal(ScalarType.BFloat16, tensors["model.b"].dtype);
        TensorAssert.Close(torch.tensor(new float[] { 1.5f, -2.25f, 3 }), tensors["model.b"].to(ScalarType.Float32), 0);
    }

    [Fact]
    public void A_pickle_that_calls_a_function_is_refused_and_runs_nothing()
    {
        using var dir = new TempDirectory();
        string marker = dir.File("pwned");
        var writer = new TorchSaveWriter();
        writer.AddStorage("0", torch.ones(2));
        writer.Write(dir.File("evil.pth"), new Dictionary<string, object>
        {
            ["payload"] = TorchSaveWriter.SystemCall($"touch {marker}"),
            ["w"] = new TorchSaveWriter.View("0", 0, new long[] { 2 }, new long[] { 1 }),
        });
        var error = Assert.Throws<BadInputException>(() => PthFile.ReadTensors(dir.File("evil.pth")));
        Assert.Contains("os.system", error.Message);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void Views_past_their_storage_truncated_storages_and_non_zip_files_are_clear_errors()
    {
        using var dir = new TempDirectory();
        var writer = new TorchSaveWriter();
        writer.AddStorage("0", torch.ones(6));
        writer.Write(dir.File("past.pth"), new Dictionary<string, object> { ["w"] = new TorchSaveWriter.View("0", 2, new long[] { 3, 2 }, new long[] { 2, 1 }) });
        var past = Assert.Throws<BadInputException>(() => PthFile.ReadTensors(dir.File("past.pth")));
        Assert.Contains("reads past storage '0'", past.Message);
        Assert.Equal(dir.File("past.pth"), past.File);

        writer.Write(dir.File("short.pth"), new Dictionary<string, object> { ["w"] = new TorchSaveWriter.View("0", 0, new long[] { 6 }, new long[] { 1 }) },
            (name, bytes) => name == "archive/data/0" ? bytes[..10] : bytes);
        Assert.Contains("should hold 6 × 4 bytes, its entry has 10", Assert.Throws<BadInputException>(() => PthFile.ReadTensors(dir.File("short.pth"))).Message);

        writer.RawPickle = new byte[] { 0x80, 2, (byte)'X', 0xff, 0xff, 0, 0 };                     // a string longer than the file
        writer.Write(dir.File("cut.pth"), new Dictionary<string, object>());
        Assert.Contains("malformed", Assert.Throws<BadInputException>(() => PthFile.ReadTensors(dir.File("cut.pth"))).Message);

        File.WriteAllBytes(dir.File("legacy.pth"), new byte[] { 0x80, 2, (byte)'.' });
        Assert.Contains("legacy", Assert.Throws<BadInputException>(() => PthFile.ReadTensors(dir.File("legacy.pth"))).Message);
        Assert.Contains("not found", Assert.Throws<BadInputException>(() => PthFile.ReadTensors(dir.File("none.pth"))).Message);
    }

    [Fact]
    public void The_legacy_pre_1_6_format_reads_back_exactly_and_refuses_code_and_truncation()
    {
        using var dir = new TempDirectory();
        var matrix = torch.arange(12, dtype: ScalarType.Float32).view(3, 4);
        TorchSaveWriter Writer()
        {
            var w = new TorchSaveWriter();
            w.AddStorage("140", matrix);
            w.AddStorage("7", torch.tensor(new long[] { 5, -6 }));
            return w;
        }
        var root = new Dictionary<string, object>
        {
            ["state_dict"] = new Dictionary<string, object>
            {
                ["w"] = new TorchSaveWriter.View("140", 0, new long[] { 3, 4 }, new long[] { 4, 1 }),
                ["w_t"] = new TorchSaveWriter.View("140", 0, new long[] { 4, 3 }, new long[] { 1, 4 }),
                ["steps"] = new TorchSaveWriter.View("7", 0, new long[] { 2 }, new long[] { 1 }),
            },
            ["epoch"] = 3,
        };
        Writer().WriteLegacy(dir.File("old.pth"), root);
        var tensors = PthFile.ReadTensors(dir.File("old.pth"));
        Assert.Equal(new[] { "state_dict.steps", "state_dict.w", "state_dict.w_t" }, tensors.Keys.OrderBy(k => k, StringComparer.Ordinal));
        TensorAssert.Close(matrix, tensors["state_dict.w"], 0);
        TensorAssert.Close(matrix.t(), tensors["state_dict.w_t"], 0);
        Assert.Equal(new long[] { 5, -6 }, tensors["state_dict.steps"].data<long>().ToArray());
        Assert.Equal(DeviceType.CPU, tensors["state_dict.w"].device_type);   // the dry pass ran on meta; the result is real

        // Cut inside the last storage's bytes.
        Writer().WriteLegacy(dir.File("cut.pth"), root, bytes => bytes[..^5]);
        var cut = Assert.Throws<BadInputException>(() => PthFile.ReadTensors(dir.File("cut.pth")));
        Assert.Contains("cut.pth", cut.File);

        string marker = dir.File("pwned");
        Writer().WriteLegacy(dir.File("evil.pth"), new Dictionary<string, object> { ["x"] = TorchSaveWriter.SystemCall($"touch {marker}"), ["w"] = root["state_dict"] });
        var evil = Assert.Throws<BadInputException>(() => PthFile.ReadTensors(dir.File("evil.pth")));
        Assert.Contains("os.system", evil.Message);
        Assert.False(File.Exists(marker));
    }
}
