using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Nn;

/// <summary>nn.LayerNorm with HF names (<c>weight</c>, <c>bias</c>), built managed so it can live on the meta device.</summary>
public sealed class LayerNorm : nn.Module<Tensor, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] TorchSharp.Modules.Parameter _weight;
    [TorchSharp.Utils.ComponentName(Name = "bias")] TorchSharp.Modules.Parameter? _bias;
    readonly long[] shape;
    readonly double eps;

    public LayerNorm(long dim, double eps, bool hasBias = true, Device? device = null) : base("LayerNorm")
    {
        shape = new[] { dim };
        this.eps = eps;
        _weight = new TorchSharp.Modules.Parameter(torch.ones(dim, device: device));
        _bias = hasBias ? new TorchSharp.Modules.Parameter(torch.zeros(dim, device: device)) : null;
        RegisterComponents();
    }

    public TorchSharp.Modules.Parameter weight { get => _weight; private set { _weight = value; ConditionallyRegisterParameter("weight", value); } }
    public TorchSharp.Modules.Parameter? bias { get => _bias; private set { _bias = value; ConditionallyRegisterParameter("bias", value); } }

    // A norm trained in full inside a bf16 frozen tower keeps fp32 weights: its input follows them.
    public override Tensor forward(Tensor x) => F.layer_norm(x.dtype == _weight.dtype ? x : x.to(_weight.dtype), shape, _weight, _bias, eps);
}
