using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>
/// A bare weight (and optional bias) inside an adapter container, named like the nn.Linear that
/// HF PEFT uses for <c>lora_A</c>/<c>lora_B</c>, so keys read <c>lora_A.default.weight</c>. The math
/// lives in the adapter that owns it; this is not a layer models use and is never a PEFT target.
/// </summary>
public sealed class AdapterWeight : nn.Module
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] TorchSharp.Modules.Parameter _weight;
    [TorchSharp.Utils.ComponentName(Name = "bias")] TorchSharp.Modules.Parameter? _bias;

    public AdapterWeight(Tensor weight, Tensor? bias = null) : base("AdapterWeight")
    {
        _weight = new TorchSharp.Modules.Parameter(weight);
        _bias = bias is null ? null : new TorchSharp.Modules.Parameter(bias);
        RegisterComponents();
    }

    public TorchSharp.Modules.Parameter weight
    {
        get => _weight;
        private set { _weight = value; ConditionallyRegisterParameter("weight", value); }
    }

    public TorchSharp.Modules.Parameter? bias
    {
        get => _bias;
        private set { _bias = value; ConditionallyRegisterParameter("bias", value); }
    }
}
