using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>
/// RMS norm as T5 (T5LayerNorm) and LLaMA (LlamaRMSNorm) define it: x·rsqrt(mean(x²) + eps)·w,
/// no mean subtraction, no bias, computed in fp32 and cast back (TorchSharp has none built in).
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] TorchSharp.Modules.Parameter _weight;
    readonly double eps;

    public RmsNorm(long dim, double eps, Device? device = null) : base("RmsNorm")
    {
        this.eps = eps;
        _weight = new TorchSharp.Modules.Parameter(torch.ones(dim, device: device));
        RegisterComponents();
    }

    public TorchSharp.Modules.Parameter weight { get => _weight; private set { _weight = value; ConditionallyRegisterParameter("weight", value); } }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.to(ScalarType.Float32);
        h = h * torch.rsqrt(h.square().mean(new long[] { -1 }, keepdim: true) + eps);
        return (_weight * h.to(_weight.dtype)).MoveToOuterDisposeScope();
    }
}
