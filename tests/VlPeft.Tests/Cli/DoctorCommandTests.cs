using System.Text.Json;

namespace VlPeft.Tests.Cli;

public class DoctorCommandTests
{
    [Fact]
    public void Json_reports_a_loaded_backend_with_positive_throughput()
    {
        var (code, output, error) = CliRunner.Run("doctor", "--json", "--size", "64");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("native_loaded").GetBoolean());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("native_error").ValueKind);
        Assert.StartsWith("2.10", root.GetProperty("libtorch_version").GetString());
        Assert.StartsWith("0.107", root.GetProperty("torchsharp_version").GetString());
        Assert.True(root.GetProperty("threads").GetInt32() >= 1);
        Assert.True(root.GetProperty("fp32_gflops").GetDouble() > 0);
        Assert.True(root.GetProperty("bf16_gflops").GetDouble() > 0);
        Assert.Equal(VlPeft.Nn.Quantization.NativeDequantize.Describe(), root.GetProperty("dequantize").GetString());
    }

    [Fact]
    public void Text_names_the_library_path()
    {
        var (code, output, _) = CliRunner.Run("doctor", "--size", "32");
        Assert.Equal(0, code);
        Assert.Contains("native library    loaded", output);
        Assert.Contains("libLibTorchSharp.so", output);
    }
}
