using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Nn;

/// <summary>The ViT patch embedding: a Conv2d with kernel = stride = patch size, managed so it can live on meta.</summary>
public sealed class Conv2dPatch : nn.Module<Tensor, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] TorchSharp.Modules.Parameter _weight;
    [TorchSharp.Utils.ComponentName(Name = "bias")] TorchSharp.Modules.Parameter? _bias;
    readonly long patch;

    public Conv2dPatch(long channels, long hidden, long patch, bool hasBias, Device? device = null) : base("Conv2d")
    {
        this.patch = patch;
        var w = torch.empty(hidden, channels, patch, patch, device: device);
        double bound = 1 / Math.Sqrt(channels * patch * patch);
        if (w.device_type != DeviceType.META) using (torch.no_grad()) w.uniform_(-bound, bound);
        _weight = new TorchSharp.Modules.Parameter(w);
        _bias = hasBias ? new TorchSharp.Modules.Parameter(torch.zeros(hidden, device: device)) : null;
        RegisterComponents();
    }

    public TorchSharp.Modules.Parameter weight { get => _weight; private set { _weight = value; ConditionallyRegisterParameter("weight", value); } }
    public TorchSharp.Modules.Parameter? bias { get => _bias; private set { _bias = value; ConditionallyRegisterParameter("bias", value); } }

    /// <summary>[B, C, H, W] → [B, hidden, H/p, W/p].</summary>
    public override Tensor forward(Tensor pixels) => F.conv2d(pixels.to(_weight.dtype), _weight, _bias, strides: new[] { patch, patch });
}
