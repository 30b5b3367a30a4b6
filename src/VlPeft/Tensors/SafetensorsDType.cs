using TorchSharp;

namespace VlPeft.Tensors;

/// <summary>The dtype strings of the safetensors header and how they map to torch.</summary>
public static class SafetensorsDType
{
    // Bits per element of every dtype the format defines (huggingface/safetensors tensor.rs).
    static readonly Dictionary<string, int> BitsByName = new()
    {
        ["BOOL"] = 8, ["U8"] = 8, ["I8"] = 8, ["I16"] = 16, ["U16"] = 16, ["F16"] = 16, ["BF16"] = 16,
        ["I32"] = 32, ["U32"] = 32, ["F32"] = 32, ["F64"] = 64, ["I64"] = 64, ["U64"] = 64,
        ["F8_E5M2"] = 8, ["F8_E4M3"] = 8, ["F8_E8M0"] = 8, ["F8_E4M3FNUZ"] = 8, ["F8_E5M2FNUZ"] = 8,
        ["C64"] = 64, ["F4"] = 4, ["F6_E2M3"] = 6, ["F6_E3M2"] = 6,
    };

    static readonly Dictionary<string, torch.ScalarType> TorchByName = new()
    {
        ["BOOL"] = torch.ScalarType.Bool, ["U8"] = torch.ScalarType.Byte, ["I8"] = torch.ScalarType.Int8,
        ["I16"] = torch.ScalarType.Int16, ["I32"] = torch.ScalarType.Int32, ["I64"] = torch.ScalarType.Int64,
        ["F16"] = torch.ScalarType.Float16, ["BF16"] = torch.ScalarType.BFloat16,
        ["F32"] = torch.ScalarType.Float32, ["F64"] = torch.ScalarType.Float64,
    };

    /// <summary>True for any dtype string the safetensors format defines.</summary>
    public static bool IsKnown(string name) => BitsByName.ContainsKey(name);

    /// <summary>Bits per element (4 and 6 for the sub-byte float formats).</summary>
    public static int BitsPerElement(string name) => BitsByName[name];

    /// <summary>True when VlPeft can turn tensors of this dtype into torch tensors.</summary>
    public static bool IsSupported(string name) => TorchByName.ContainsKey(name);

    public static torch.ScalarType ToTorch(string name) =>
        TorchByName.TryGetValue(name, out var t)
            ? t
            : throw new NotSupportedException($"safetensors dtype {name} has no torch equivalent in VlPeft");

    public static string FromTorch(torch.ScalarType type)
    {
        foreach (var (name, t) in TorchByName)
            if (t == type) return name;
        throw new NotSupportedException($"torch dtype {type} cannot be stored in safetensors by VlPeft");
    }
}
