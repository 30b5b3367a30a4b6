using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Peft.LoHa;

/// <summary>
/// LoHa on a linear layer (HF PEFT loha/layer.py): ΔW = (W1a·W1b) ⊙ (W2a·W2b) · α/r, with
/// W1a, W2a ∈ R^{out×r} and W1b, W2b ∈ R^{r×in} stored as bare parameters (<c>hada_w1_a.{name}</c>).
/// Init: W1a, W1b, W2a kaiming-uniform(a=√5), W2b = 0, so ΔW = 0 at start.
/// </summary>
public sealed class LoHaAdapter : LinearAdapter
{
    static readonly string[] Kinds = { "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b" };

    public LoHaAdapter(string name, Linear layer, int rank, double alpha, bool initWeights = true) : base(name, layer)
    {
        Rank = rank;
        Scaling = alpha / rank;
        var dtype = AdapterDtype(layer);
        var device = layer.weight.device;
        using var _ = torch.no_grad();
        // kaiming_uniform(a=√5) on a [rows, cols] tensor is U(±1/√cols).
        Tensor Kaiming(long rows, long cols) => torch.empty(rows, cols, dtype: dtype, device: device).uniform_(-1 / Math.Sqrt(cols), 1 / Math.Sqrt(cols));
        var w2b = initWeights ? torch.zeros(rank, layer.InFeatures, dtype: dtype, device: device) : Kaiming(rank, layer.InFeatures);
        var tensors = new[] { Kaiming(layer.OutFeatures, rank), Kaiming(rank, layer.InFeatures), Kaiming(layer.OutFeatures, rank), w2b };
        for (int i = 0; i < Kinds.Length; i++)
            layer.Container(Kinds[i]).AddParameter(name, new TorchSharp.Modules.Parameter(tensors[i]));
    }

    public int Rank { get; }
    public double Scaling { get; }

    TorchSharp.Modules.Parameter P(int i) => Layer.Container(Kinds[i]).Parameter(Name);

    public override IReadOnlyList<string> ContainerKinds => Kinds;

    public override Tensor Forward(Tensor x, Tensor baseOutput)
    {
        using var scope = torch.NewDisposeScope();
        var delta = ComputeDelta(P(0).dtype);
        return F.linear(x.to(delta.dtype), delta).to(baseOutput.dtype).MoveToOuterDisposeScope();
    }

    Tensor ComputeDelta(ScalarType dtype) =>
        torch.matmul(P(0), P(1)).to(dtype) * torch.matmul(P(2), P(3)).to(dtype) * Scaling;

    public override Tensor DeltaWeight() => ComputeDelta(ScalarType.Float32);
}
