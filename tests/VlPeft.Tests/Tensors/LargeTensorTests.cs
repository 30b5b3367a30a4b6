using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Tests.Tensors;

public class LargeTensorTests
{
    [SlowFact]
    [Trait("Category", "Slow")]
    public void Tensor_over_2_GiB_round_trips()
    {
        using var dir = new TempDirectory();
        string path = dir.File("big.safetensors");
        long elements = (1L << 31) + 4097; // > int.MaxValue bytes of U8
        using (var big = torch.zeros(elements, dtype: ScalarType.Byte))
        {
            // Marks at both ends and across the 2 GiB boundary; a misplaced slice would move them.
            big[0] = torch.tensor((byte)11);
            big[int.MaxValue] = torch.tensor((byte)22);
            big[elements - 1] = torch.tensor((byte)33);
            SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["big"] = big });
        }
        var lengthField = new byte[8];
        using (var stream = File.OpenRead(path)) stream.ReadExactly(lengthField);
        Assert.Equal(elements, new FileInfo(path).Length - 8 - (long)BitConverter.ToUInt64(lengthField));
        using var file = SafetensorsFile.Open(path);
        using var back = file.ReadTensor("big");
        Assert.Equal(elements, back.shape[0]);
        Assert.Equal(11, back[0].item<byte>());
        Assert.Equal(22, back[int.MaxValue].item<byte>());
        Assert.Equal(33, back[elements - 1].item<byte>());
        Assert.Equal(66L, back.sum(ScalarType.Int64).item<long>());
    }
}
