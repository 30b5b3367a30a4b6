using System.Text;
using TorchSharp;
using VlPeft.Models.Loading;
using VlPeft.Nn.Quantization;
using VlPeft.Tensors;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Tests.Nn;

/// <summary>
/// Checkpoints in bitsandbytes' serialized layout, built here from the documented format (not by our quantizer):
/// the expected weights are computed from the stored codes by the format's own formulas.
/// </summary>
public class BitsAndBytesCheckpointTests
{
    sealed class Holder : nn.Module
    {
        public readonly Linear proj;

        public Holder(long inFeatures, long outFeatures) : base("holder")
        {
            proj = new Linear(inFeatures, outFeatures);
            RegisterComponents();
        }
    }

    static Tensor Json(string json) => torch.tensor(Encoding.UTF8.GetBytes(json), dtype: ScalarType.Byte);

    [Fact]
    public void A_double_quantized_nf4_weight_loads_as_code_times_reconstructed_absmax()
    {
        using var dir = new TempDirectory();
        const int outF = 2, inF = 96;            // 192 values: 3 blocks of 64, one nested block
        var random = new Random(1);
        var codes = Enumerable.Range(0, outF * inF).Select(_ => random.Next(16)).ToArray();
        var packed = Enumerable.Range(0, codes.Length / 2).Select(i => (byte)((codes[2 * i] << 4) | codes[2 * i + 1])).ToArray();
        var nestedMap = Enumerable.Range(0, 256).Select(i => -1f + 2f * i / 255).ToArray();   // any 256-value map: the file carries it
        byte[] absmaxCodes = { 200, 17, 255 };
        float nestedAbsmax = 0.5f, offset = 0.75f;
        var tensors = new Dictionary<string, Tensor>
        {
            ["proj.weight"] = torch.tensor(packed, dtype: ScalarType.Byte).view(-1, 1),
            ["proj.weight.absmax"] = torch.tensor(absmaxCodes, dtype: ScalarType.Byte),
            ["proj.weight.quant_map"] = torch.tensor(Nf4Weight.Levels),
            ["proj.weight.nested_absmax"] = torch.tensor(new[] { nestedAbsmax }),
            ["proj.weight.nested_quant_map"] = torch.tensor(nestedMap),
            ["proj.weight.quant_state.bitsandbytes__nf4"] = Json($$"""{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [{{outF}}, {{inF}}], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": {{offset}}}"""),
            ["proj.bias"] = torch.tensor(new[] { 0.5f, -0.25f }),
        };
        SafetensorsWriter.Write(dir.File("model.safetensors"), tensors);
        using var holder = new Holder(inF, outF);
        CheckpointLoader.Load(holder, dir.File("model.safetensors"));

        Assert.Equal("nf4", holder.proj.Quantized!.Format);
        var weight = holder.proj.Quantized.Dequantize(ScalarType.Float32).reshape(-1).data<float>().ToArray();
        for (int i = 0; i < codes.Length; i++)
        {
            float scale = nestedMap[absmaxCodes[i / 64]] * nestedAbsmax + offset;
            Assert.Equal(Nf4Weight.Levels[codes[i]] * scale, weight[i], 5);
        }
        Assert.Equal(new[] { 0.5f, -0.25f }, holder.proj.bias!.data<float>().ToArray());
        Assert.False(holder.proj.weight.requires_grad);
    }

    [Fact]
    public void An_nf4_weight_without_double_quantization_and_an_int8_weight_load()
    {
        using var dir = new TempDirectory();
        var codes = Enumerable.Range(0, 2 * 64).Select(i => i % 16).ToArray();
        var packed = Enumerable.Range(0, 64).Select(i => (byte)((codes[2 * i] << 4) | codes[2 * i + 1])).ToArray();
        SafetensorsWriter.Write(dir.File("four.safetensors"), new Dictionary<string, Tensor>
        {
            ["proj.weight"] = torch.tensor(packed, dtype: ScalarType.Byte).view(-1, 1),
            ["proj.weight.absmax"] = torch.tensor(new[] { 2f, 3f }),
            ["proj.weight.quant_map"] = torch.tensor(Nf4Weight.Levels),
            ["proj.weight.quant_state.bitsandbytes__nf4"] = Json("""{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2, 64]}"""),
            ["proj.bias"] = torch.zeros(2),
        });
        using (var holder = new Holder(64, 2))
        {
            CheckpointLoader.Load(holder, dir.File("four.safetensors"));
            var w = holder.proj.Quantized!.Dequantize(ScalarType.Float32).data<float>().ToArray();
            for (int i = 0; i < 128; i++) Assert.Equal(Nf4Weight.Levels[codes[i]] * (i < 64 ? 2f : 3f), w[i], 5);
        }

        sbyte[] q = { 127, -64, 0, 5, -127, 1 };
        SafetensorsWriter.Write(dir.File("eight.safetensors"), new Dictionary<string, Tensor>
        {
            ["proj.weight"] = torch.tensor(q.Select(v => (long)v).ToArray()).to(ScalarType.Int8).view(2, 3),
            ["proj.SCB"] = torch.tensor(new[] { 1.27f, 2.54f }),
            ["proj.weight_format"] = torch.tensor(new byte[] { 0 }, dtype: ScalarType.Byte),
            ["proj.bias"] = torch.zeros(2),
        });
        using (var holder = new Holder(3, 2))
        {
            CheckpointLoader.Load(holder, dir.File("eight.safetensors"));
            Assert.Equal("int8", holder.proj.Quantized!.Format);
            var w = holder.proj.Quantized.Dequantize(ScalarType.Float32).data<float>().ToArray();
            for (int i = 0; i < 6; i++) Assert.Equal(q[i] * (i < 3 ? 1.27f : 2.54f) / 127, w[i], 5);
        }
    }

    [Fact]
    public void Layouts_we_do_not_read_are_refused_by_name()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("tiles.safetensors"), new Dictionary<string, Tensor>
        {
            ["proj.weight"] = torch.zeros(new long[] { 2, 3 }, dtype: ScalarType.Int8),
            ["proj.SCB"] = torch.ones(2),
            ["proj.weight_format"] = torch.tensor(new byte[] { 1 }, dtype: ScalarType.Byte),
            ["proj.bias"] = torch.zeros(2),
        });
        using var holder = new Holder(3, 2);
        var e = Assert.Throws<BadInputException>(() => CheckpointLoader.Load(holder, dir.File("tiles.safetensors")));
        Assert.Contains("'proj': 8-bit weight_format 1 is a GPU tile layout", e.Message);

        SafetensorsWriter.Write(dir.File("odd.safetensors"), new Dictionary<string, Tensor>
        {
            ["proj.weight"] = torch.zeros(new long[] { 3, 1 }, dtype: ScalarType.Byte),
            ["proj.weight.absmax"] = torch.ones(1),
            ["proj.weight.quant_map"] = torch.zeros(16),
            ["proj.weight.quant_state.bitsandbytes__int2"] = Json("""{"shape": [2, 3], "blocksize": 64}"""),
            ["proj.bias"] = torch.zeros(2),
        });
        e = Assert.Throws<BadInputException>(() => CheckpointLoader.Load(holder, dir.File("odd.safetensors")));
        Assert.Contains("bitsandbytes 4-bit type 'int2' is not read (nf4 and fp4 are)", e.Message);
    }
}
