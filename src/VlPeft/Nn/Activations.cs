using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Nn;

/// <summary>HF's ACT2FN by name: "gelu" is the exact erf GELU, "gelu_new" the tanh approximation.</summary>
public static class Activations
{
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "gelu" => x => F.gelu(x),
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => x => F.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "relu" => x => F.relu(x),
        "silu" or "swish" => x => F.silu(x),
        "quick_gelu" => x => x * torch.sigmoid(1.702 * x),
        _ => throw new BadInputException($"activation '{name}' is not supported (gelu, gelu_new, relu, silu, quick_gelu are)"),
    };
}
