using System.Text.Json.Nodes;
using TorchSharp;
using VlPeft.Nn.Quantization;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Models.Loading;

/// <summary>
/// Linear weights saved by bitsandbytes through Transformers (<c>save_pretrained</c> of a 4- or 8-bit model), read by
/// their key layout. 4-bit (Linear4bit, QuantState.as_dict(packed = true)): <c>weight</c> (uint8, two codes per byte),
/// <c>weight.absmax</c> (fp32, or uint8 codes with double quantization), <c>weight.quant_map</c> (the 16 levels),
/// <c>weight.nested_absmax</c>, <c>weight.nested_quant_map</c>, and <c>weight.quant_state.bitsandbytes__nf4|fp4</c> (uint8 JSON:
/// quant_type, blocksize, shape, nested_blocksize, nested_offset, dtype). 8-bit (Linear8bitLt): <c>weight</c> (int8),
/// <c>SCB</c> (fp32 row maxima) and optionally <c>weight_format</c> (0 = row-major).
/// </summary>
public static class BitsAndBytesWeights
{
    const string FourBitState = ".weight.quant_state.bitsandbytes__";
    static readonly string[] FourBitParts = { ".weight", ".weight.absmax", ".weight.quant_map", ".weight.nested_absmax", ".weight.nested_quant_map" };

    /// <summary>Module name → its keys in the checkpoint, for every quantized linear the checkpoint holds.</summary>
    internal static Dictionary<string, List<string>> Find(IReadOnlyCollection<string> keys)
    {
        var found = new Dictionary<string, List<string>>();
        var all = keys.ToHashSet();
        foreach (var key in keys)
        {
            int state = key.IndexOf(FourBitState, StringComparison.Ordinal);
            if (state >= 0)
            {
                string module = key[..state];
                found[module] = FourBitParts.Select(p => module + p).Where(all.Contains).Append(key).ToList();
            }
            else if (key.EndsWith(".SCB", StringComparison.Ordinal))
            {
                string module = key[..^4];
                found[module] = new[] { module + ".weight", key, module + ".weight_format" }.Where(all.Contains).ToList();
            }
        }
        return found;
    }

    /// <summary>The tensors bitsandbytes would save for a quantized linear weight, by key (the inverse of <see cref="Read"/>).</summary>
    public static Dictionary<string, Tensor> Tensors(string module, QuantizedWeight weight)
    {
        if (weight is Int8Weight int8)
            return new Dictionary<string, Tensor>
            {
                [module + ".weight"] = int8.Values,
                [module + ".SCB"] = int8.RowAbsmax,
                [module + ".weight_format"] = torch.zeros(1, dtype: ScalarType.Byte),
            };
        var nf4 = (Nf4Weight)weight;
        var state = new System.Text.Json.Nodes.JsonObject
        {
            ["quant_type"] = nf4.Format,
            ["blocksize"] = nf4.BlockSizeUsed,
            ["dtype"] = "float32",
            ["shape"] = new System.Text.Json.Nodes.JsonArray(nf4.OutFeatures, nf4.InFeatures),
        };
        var tensors = new Dictionary<string, Tensor>
        {
            [module + ".weight"] = nf4.Packed.view(-1, 1),
            [module + ".weight.absmax"] = nf4.AbsmaxCodes ?? nf4.Absmax!,
            [module + ".weight.quant_map"] = nf4.Code,
        };
        if (nf4.DoubleQuant)
        {
            state["nested_blocksize"] = Nf4Weight.NestedBlockSize;
            state["nested_dtype"] = "float32";
            state["nested_offset"] = nf4.Offset;
            tensors[module + ".weight.nested_absmax"] = nf4.NestedAbsmax!;
            tensors[module + ".weight.nested_quant_map"] = nf4.NestedCode!;
        }
        tensors[module + FourBitState + nf4.Format] = torch.tensor(System.Text.Encoding.UTF8.GetBytes(state.ToJsonString()), dtype: ScalarType.Byte);
        return tensors;
    }

    internal static QuantizedWeight Read(TensorCheckpoint checkpoint, string module, List<string> keys)
    {
        string file = checkpoint.FileOf(keys[^1]);
        return keys.Any(k => k.EndsWith(".SCB", StringComparison.Ordinal)) ? ReadInt8(checkpoint, module, file) : ReadFourBit(checkpoint, module, keys, file);
    }

    static QuantizedWeight ReadInt8(TensorCheckpoint checkpoint, string module, string file)
    {
        if (checkpoint.Entries.Any(e => e.Name == module + ".weight_format"))
        {
            using var format = checkpoint.ReadTensor(module + ".weight_format");
            long layout = format.to(ScalarType.Int64).reshape(-1)[0].item<long>();
            if (layout != 0) throw new BadInputException($"'{module}': 8-bit weight_format {layout} is a GPU tile layout; only row-major (0) is read — save the model with a current bitsandbytes", file);
        }
        var values = checkpoint.ReadTensor(module + ".weight");
        if (values.dtype != ScalarType.Int8 || values.dim() != 2)
            throw new BadInputException($"'{module}.weight' beside SCB is {values.dtype} [{string.Join(", ", values.shape)}]; an 8-bit weight is int8 [out, in]", file);
        return new Int8Weight(values, checkpoint.ReadTensor(module + ".SCB"));
    }

    static QuantizedWeight ReadFourBit(TensorCheckpoint checkpoint, string module, List<string> keys, string file)
    {
        string stateKey = keys[^1];
        string type = stateKey[(stateKey.IndexOf(FourBitState, StringComparison.Ordinal) + FourBitState.Length)..];
        if (type is not ("nf4" or "fp4")) throw new BadInputException($"'{module}': bitsandbytes 4-bit type '{type}' is not read (nf4 and fp4 are)", file);
        JsonNode state;
        using (var raw = checkpoint.ReadTensor(stateKey))
        {
            try
            {
                state = JsonNode.Parse(System.Text.Encoding.UTF8.GetString(raw.to(ScalarType.Byte).data<byte>().ToArray()))!;
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new BadInputException($"'{stateKey}' is not the JSON of a bitsandbytes quant_state ({e.Message})", file);
            }
        }
        long[] shape = state["shape"]?.AsArray().Select(v => v!.GetValue<long>()).ToArray()
            ?? throw new BadInputException($"'{stateKey}' has no shape", file);
        if (shape.Length != 2) throw new BadInputException($"'{module}': a 4-bit linear weight has a 2-D shape; quant_state says [{string.Join(", ", shape)}]", file);
        int blockSize = state["blocksize"]?.GetValue<int>() ?? throw new BadInputException($"'{stateKey}' has no blocksize", file);
        Tensor Required(string suffix) => keys.Contains(module + suffix) ? checkpoint.ReadTensor(module + suffix)
            : throw new BadInputException($"4-bit weight '{module}' lacks '{module}{suffix}'", file);
        var packed = Required(".weight");
        var code = Required(".weight.quant_map");
        var absmax = Required(".weight.absmax");
        bool nested = keys.Contains(module + ".weight.nested_absmax");
        if (!nested) return new Nf4Weight(shape[0], shape[1], packed.to(ScalarType.Byte), code, blockSize, absmax, format: type);
        float offset = state["nested_offset"]?.GetValue<float>() ?? throw new BadInputException($"'{stateKey}' has nested_absmax but no nested_offset", file);
        int nestedBlockSize = state["nested_blocksize"]?.GetValue<int>() ?? Nf4Weight.NestedBlockSize;
        return new Nf4Weight(shape[0], shape[1], packed.to(ScalarType.Byte), code, blockSize, null, absmax.to(ScalarType.Byte),
            Required(".weight.nested_absmax"), Required(".weight.nested_quant_map"), offset, nestedBlockSize, type);
    }
}
