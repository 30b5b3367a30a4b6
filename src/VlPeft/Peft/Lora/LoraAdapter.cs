using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Peft.Lora;

/// <summary>
/// LoRA on one linear layer (HF PEFT lora/layer.py): Δy = s·B·A·dropout(x), A ∈ R^{r×in},
/// B ∈ R^{out×r}, s = α/r (α/√r with rslora). Tensors live at <c>lora_A.{name}.weight</c> and
/// <c>lora_B.{name}.weight</c> (+ <c>.bias</c> with lora_bias).
/// </summary>
public class LoraAdapter : LinearAdapter
{
    public const string AKind = "lora_A", BKind = "lora_B";

    public LoraAdapter(string name, Linear layer, int rank, double alpha, double dropout, bool useRslora,
        string init = "true", bool loraBias = false) : base(name, layer)
    {
        Rank = rank;
        Alpha = alpha;
        Dropout = dropout;
        Scaling = useRslora ? alpha / Math.Sqrt(rank) : alpha / rank;
        var dtype = AdapterDtype(layer);
        var device = layer.weight.device;
        using var _ = torch.no_grad();
        var a = torch.empty(rank, layer.InFeatures, dtype: dtype, device: device);
        var b = torch.zeros(layer.OutFeatures, rank, dtype: dtype, device: device);
        switch (init)
        {
            case "gaussian":
                a.normal_(0, 1.0 / rank);
                break;
            case "false": // nn.Linear's own init for both factors: U(±1/√fan_in)
                a.uniform_(-1 / Math.Sqrt(layer.InFeatures), 1 / Math.Sqrt(layer.InFeatures));
                b.uniform_(-1 / Math.Sqrt(rank), 1 / Math.Sqrt(rank));
                break;
            default: // kaiming_uniform(a=√5) = U(±1/√in); B = 0 so the adapter starts as a no-op
                a.uniform_(-1 / Math.Sqrt(layer.InFeatures), 1 / Math.Sqrt(layer.InFeatures));
                break;
        }
        A = new AdapterWeight(a);
        B = new AdapterWeight(b, loraBias ? torch.zeros(layer.OutFeatures, dtype: dtype, device: device) : null);
        layer.Container(AKind).AddModule(name, A);
        layer.Container(BKind).AddModule(name, B);
    }

    public int Rank { get; }
    public double Alpha { get; }
    public double Dropout { get; }
    public double Scaling { get; }

    // The modules stay the same objects for the adapter's life (dtype moves replace only their parameters).
    public AdapterWeight A { get; }
    public AdapterWeight B { get; }

    public override IReadOnlyList<string> ContainerKinds => new[] { AKind, BKind };

    public override Tensor Forward(Tensor x, Tensor baseOutput)
    {
        using var scope = torch.NewDisposeScope();
        var input = DropoutInput(x.to(A.weight.dtype));
        return LoraOutput(input).to(baseOutput.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The whole layer output through <see cref="FusedLoraLinear"/> when that is exact and safe: this
    /// is the only active adapter, plain LoRA (no DoRA, no lora_B bias, no active dropout), a frozen
    /// base stored [out, in] in fp32, or in bf16/fp16 under fp32 factors, or quantized. Otherwise null, and the layer adds
    /// the adapter to its base output.
    /// </summary>
    public override Tensor? FusedForward(Tensor x)
    {
        var layer = Layer;
        var a = A.weight;
        if (GetType() != typeof(LoraAdapter) || B.bias is not null || (Dropout > 0 && layer.training) || layer.FanInFanOut
            || layer.weight.requires_grad || layer.bias is { requires_grad: true }
            || x.dtype != layer.weight.dtype || a.dtype != ScalarType.Float32 || B.weight.dtype != ScalarType.Float32
            || !(x.dtype == ScalarType.Float32 || x.dtype == ScalarType.BFloat16 || x.dtype == ScalarType.Float16)
            || !torch.is_grad_enabled())
            return null;
        return FusedLoraLinear.apply(x, layer.weight, layer.bias!, a, B.weight, Scaling, layer.Quantized!);
    }

    /// <summary>output + s·B·(A·x) as one addmm (no separate activation-sized delta), when dtypes allow.</summary>
    public override Tensor AddTo(Tensor output, Tensor x, Tensor baseOutput)
    {
        if (GetType() != typeof(LoraAdapter) || B.bias is not null || output.dtype != B.weight.dtype)
            return base.AddTo(output, x, baseOutput);
        using var scope = torch.NewDisposeScope();
        var h = F.linear(DropoutInput(x.to(A.weight.dtype)), A.weight);   // [..., r]
        var flat = torch.addmm(output.reshape(-1, output.shape[^1]), h.reshape(-1, h.shape[^1]), B.weight.t(), beta: 1, alpha: (float)Scaling);
        return flat.view(output.shape).MoveToOuterDisposeScope();
    }

    /// <summary>s·B·A·x for an input already cast and dropped out.</summary>
    protected Tensor LoraOutput(Tensor input)
    {
        // Scaling the r-wide middle is cheaper than the out-wide result; with a B bias HF scales the sum.
        return B.bias is null
            ? F.linear(F.linear(input, A.weight) * Scaling, B.weight)
            : F.linear(F.linear(input, A.weight), B.weight, B.bias) * Scaling;
    }

    protected Tensor DropoutInput(Tensor x) =>
        Dropout > 0 && Layer.training ? F.dropout(x, Dropout, training: true) : x;

    public override Tensor DeltaWeight()
    {
        // Computed in fp32 (HF does so for half precision on CPU), then cast by the caller.
        var a = A.weight.to(ScalarType.Float32);
        var b = B.weight.to(ScalarType.Float32);
        return torch.matmul(b, a) * Scaling;
    }

    public override Tensor? DeltaBias() => B.bias is null ? null : B.bias * Scaling;
}
