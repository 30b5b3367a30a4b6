using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Peft.AdaLora;

/// <summary>
/// AdaLoRA's SVD-form adapter (HF PEFT adalora/layer.py SVDLinear):
/// Δy = P·((Q ⊙ Λ)·dropout(x)) · scaling / (ranknum + 1e-5), with Q = lora_A [r, in],
/// Λ = lora_E [r, 1], P = lora_B [out, r] stored as bare parameters (keys without <c>.weight</c>),
/// and ranknum a frozen parameter holding init_r, never changed by pruning.
/// </summary>
public sealed class AdaLoraAdapter : LinearAdapter
{
    public const string AKind = "lora_A", EKind = "lora_E", BKind = "lora_B", RankNumKind = "ranknum";

    public AdaLoraAdapter(string name, Linear layer, int initRank, double scaling, double dropout) : base(name, layer)
    {
        InitRank = initRank;
        Scaling = scaling;
        Dropout = dropout;
        var dtype = AdapterDtype(layer);
        using var _ = torch.no_grad();
        // HF init: E = 0 (so ΔW = 0), A and B ~ N(0, 0.02).
        var a = torch.empty(initRank, layer.InFeatures, dtype: dtype, device: layer.weight.device).normal_(0, 0.02);
        var e = torch.zeros(initRank, 1, dtype: dtype, device: layer.weight.device);
        var b = torch.empty(layer.OutFeatures, initRank, dtype: dtype, device: layer.weight.device).normal_(0, 0.02);
        layer.Container(AKind).AddParameter(name, new TorchSharp.Modules.Parameter(a));
        layer.Container(EKind).AddParameter(name, new TorchSharp.Modules.Parameter(e));
        layer.Container(BKind).AddParameter(name, new TorchSharp.Modules.Parameter(b));
        layer.Container(RankNumKind).AddParameter(name,
            new TorchSharp.Modules.Parameter(torch.full(1, (double)initRank, dtype: dtype, device: layer.weight.device), requires_grad: false));
    }

    public int InitRank { get; }
    public double Scaling { get; }
    public double Dropout { get; }

    public TorchSharp.Modules.Parameter A => Layer.Container(AKind).Parameter(Name);
    public TorchSharp.Modules.Parameter E => Layer.Container(EKind).Parameter(Name);
    public TorchSharp.Modules.Parameter B => Layer.Container(BKind).Parameter(Name);
    public TorchSharp.Modules.Parameter RankNum => Layer.Container(RankNumKind).Parameter(Name);

    /// <summary>Current stored rank (rows of A; smaller than init_r after loading a pruned adapter).</summary>
    public long StoredRank => A.shape[0];

    public override IReadOnlyList<string> ContainerKinds => new[] { AKind, EKind, BKind, RankNumKind };

    public override Tensor Forward(Tensor x, Tensor baseOutput)
    {
        using var scope = torch.NewDisposeScope();
        var input = x.to(A.dtype);
        if (Dropout > 0 && Layer.training) input = F.dropout(input, Dropout, training: true);
        var delta = F.linear(F.linear(input, A * E), B) * Scaling / (RankNum + 1e-5);
        return delta.to(baseOutput.dtype).MoveToOuterDisposeScope();
    }

    public override Tensor DeltaWeight() =>
        torch.matmul(B.to(ScalarType.Float32), (A * E).to(ScalarType.Float32)) * Scaling / (RankNum.to(ScalarType.Float32) + 1e-5);

    /// <summary>
    /// HF resize_modules_by_rank_pattern: re-create A, E, B with the kept rank (copying kept rows and
    /// columns when the current tensors are full size); ranknum stays init_r so the scale is unchanged.
    /// </summary>
    public void ResizeTo(bool[] keep)
    {
        if (keep.Length != InitRank)
            throw new BadInputException($"rank_pattern entry has {keep.Length} values but init_r is {InitRank}");
        using var _ = torch.no_grad();
        var index = torch.tensor(Enumerable.Range(0, keep.Length).Where(i => keep[i]).Select(i => (long)i).ToArray());
        Layer.Container(AKind).ReplaceParameter(Name, new TorchSharp.Modules.Parameter(A.index_select(0, index).clone()));
        Layer.Container(EKind).ReplaceParameter(Name, new TorchSharp.Modules.Parameter(E.index_select(0, index).clone()));
        Layer.Container(BKind).ReplaceParameter(Name, new TorchSharp.Modules.Parameter(B.index_select(1, index).clone()));
    }
}
