using System.Text.Json;
using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Tests.Cli;

public class InspectCommandTests
{
    [Fact]
    public void Json_lists_tensors_totals_metadata_and_stats()
    {
        using var dir = new TempDirectory();
        string path = dir.File("m.safetensors");
        using var w = torch.tensor(new float[] { 1, 2, 3, 6, float.NaN, float.PositiveInfinity }).reshape(2, 3).to(ScalarType.BFloat16);
        using var ids = torch.tensor(new long[] { 7, 7 });
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["layer.weight"] = w, ["ids"] = ids },
            new Dictionary<string, string> { ["format"] = "pt" });

        var (code, output, error) = CliRunner.Run("inspect", path, "--stats", "--json");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal(8, root.GetProperty("total_parameters").GetInt64());
        Assert.Equal(6 * 2 + 2 * 8, root.GetProperty("total_bytes").GetInt64());
        Assert.Equal("pt", root.GetProperty("metadata").GetProperty("format").GetString());
        var weight = root.GetProperty("tensors").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "layer.weight");
        Assert.Equal("BF16", weight.GetProperty("dtype").GetString());
        Assert.Equal(new long[] { 2, 3 }, weight.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        var stats = weight.GetProperty("stats");
        Assert.Equal(1, stats.GetProperty("min").GetDouble());
        Assert.Equal(6, stats.GetProperty("max").GetDouble());
        Assert.Equal(3, stats.GetProperty("mean").GetDouble());
        Assert.Equal(Math.Sqrt(14.0 / 3.0), stats.GetProperty("std").GetDouble(), 12);
        Assert.Equal(1, stats.GetProperty("nan").GetInt64());
        Assert.Equal(1, stats.GetProperty("inf").GetInt64());
    }

    [Fact]
    public void Without_stats_there_is_no_stats_object_and_text_shows_totals()
    {
        using var dir = new TempDirectory();
        string path = dir.File("m.safetensors");
        using var w = torch.zeros(4, 5);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["w"] = w });

        var (code, output, _) = CliRunner.Run("inspect", path, "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        Assert.False(doc.RootElement.GetProperty("tensors")[0].TryGetProperty("stats", out _));

        var text = CliRunner.Run("inspect", dir.Path);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("w     F32    [4, 5]  20", text.Out);
        Assert.Contains("parameters: 20  bytes: 80", text.Out);
    }

    [Fact]
    public void Bad_file_exits_2_with_one_error_line_naming_the_file()
    {
        using var dir = new TempDirectory();
        string path = dir.File("broken.safetensors");
        File.WriteAllBytes(path, new byte[] { 255, 255, 255, 255, 0, 0, 0, 0, (byte)'{' });
        var (code, output, error) = CliRunner.Run("inspect", path);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        var lines = error.TrimEnd().Split('\n');
        Assert.Single(lines);
        Assert.StartsWith("error: invalid safetensors: header length", lines[0]);
        Assert.EndsWith($"({path})", lines[0]);
    }

    [Fact]
    public void Usage_error_exits_2()
    {
        var (code, _, error) = CliRunner.Run("inspect", "--no-such-flag");
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", error);
    }
}
