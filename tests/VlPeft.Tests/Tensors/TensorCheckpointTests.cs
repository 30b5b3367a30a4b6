using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Tests.Tensors;

public class TensorCheckpointTests
{
    /// <summary>Two shards and an index written the way Transformers lays them out.</summary>
    static void WriteSharded(string dir, string? index = null)
    {
        using var a = torch.arange(4, dtype: ScalarType.Float32);
        using var b = torch.ones(2, 2, dtype: ScalarType.Int64);
        using var c = torch.zeros(3, dtype: ScalarType.BFloat16);
        SafetensorsWriter.Write(Path.Combine(dir, "model-00001-of-00002.safetensors"), new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b });
        SafetensorsWriter.Write(Path.Combine(dir, "model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["c"] = c });
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), index ??
            "{\"metadata\":{\"total_size\":38},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}");
    }

    [Fact]
    public void Directory_with_an_index_reads_every_shard()
    {
        using var dir = new TempDirectory();
        WriteSharded(dir.Path);
        using var checkpoint = TensorCheckpoint.Open(dir.Path);
        Assert.Equal(new[] { "a", "b", "c" }, checkpoint.Entries.Select(e => e.Name).OrderBy(n => n));
        Assert.Equal(2, checkpoint.ShardPaths.Count);
        Assert.Equal(38, checkpoint.Metadata["total_size"].GetInt64());
        using var a = checkpoint.ReadTensor("a");
        Assert.Equal(new float[] { 0, 1, 2, 3 }, a.data<float>().ToArray());
        using var c = checkpoint.ReadTensor("c");
        Assert.Equal(ScalarType.BFloat16, c.dtype);
        Assert.EndsWith("model-00002-of-00002.safetensors", checkpoint.FileOf("c"));
    }

    [Fact]
    public void Missing_shard_is_named()
    {
        using var dir = new TempDirectory();
        WriteSharded(dir.Path);
        File.Delete(dir.File("model-00002-of-00002.safetensors"));
        var e = Assert.Throws<BadInputException>(() => TensorCheckpoint.Open(dir.Path));
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void Index_naming_a_tensor_the_shard_lacks_is_an_error()
    {
        using var dir = new TempDirectory();
        WriteSharded(dir.Path, "{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\"}}");
        var e = Assert.Throws<BadInputException>(() => TensorCheckpoint.Open(dir.Path));
        Assert.Contains("does not hold it", e.Message);
    }

    [Fact]
    public void Shard_path_leaving_the_directory_is_refused()
    {
        using var dir = new TempDirectory();
        WriteSharded(dir.Path, "{\"weight_map\":{\"a\":\"../../etc/passwd\"}}");
        var e = Assert.Throws<BadInputException>(() => TensorCheckpoint.Open(dir.Path));
        Assert.Contains("outside the checkpoint directory", e.Message);
    }

    [Fact]
    public void Index_without_weight_map_is_an_error()
    {
        using var dir = new TempDirectory();
        WriteSharded(dir.Path, "{\"metadata\":{}}");
        var e = Assert.Throws<BadInputException>(() => TensorCheckpoint.Open(dir.Path));
        Assert.Contains("weight_map", e.Message);
    }

    [Fact]
    public void Empty_directory_is_an_error()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<BadInputException>(() => TensorCheckpoint.Open(dir.Path));
        Assert.Equal(dir.Path, e.File);
    }
}
