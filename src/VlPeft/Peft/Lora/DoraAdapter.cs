using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Peft.Lora;

/// <summary>
/// DoRA (HF PEFT lora/dora.py): LoRA plus a learned per-row magnitude m, initialised to the row
/// norms n = ‖W0 + s·B·A‖ (= ‖W0‖ at init since B = 0). Forward adds
/// (m/n − 1)⊙(W0·x) + (m/n)⊙s·B·A·x with n recomputed every call and detached; with active dropout
/// W0·x is recomputed on the dropped-out input. Merge: W ← (m/n)⊙(W0 + ΔW), row-wise.
/// </summary>
public sealed class DoraAdapter : LoraAdapter
{
    public const string MagnitudeKind = "lora_magnitude_vector";

    Tensor? mergedNorm;

    public DoraAdapter(string name, Linear layer, int rank, double alpha, double dropout, bool useRslora,
        string init = "true", bool loraBias = false)
        : base(name, layer, rank, alpha, dropout, useRslora, init, loraBias)
    {
        using var _ = torch.no_grad();
        var norm = RowNorm(DeltaWeight()).to(A.weight.dtype);
        Magnitude = new AdapterWeight(norm.detach().clone());
        layer.Container(MagnitudeKind).AddModule(name, Magnitude);
    }

    public AdapterWeight Magnitude { get; }

    public override IReadOnlyList<string> ContainerKinds => new[] { AKind, BKind, MagnitudeKind };

    /// <summary>‖W0 + ΔW‖ per output row, in fp32.</summary>
    Tensor RowNorm(Tensor deltaOutIn) => (Layer.WeightOutIn().to(ScalarType.Float32) + deltaOutIn).square().sum(1).sqrt();

    public override Tensor Forward(Tensor x, Tensor baseOutput)
    {
        using var scope = torch.NewDisposeScope();
        var input = DropoutInput(x.to(A.weight.dtype));
        var norm = RowNorm(DeltaWeight()).detach();
        var scale = (Magnitude.weight / norm.to(Magnitude.weight.dtype)).view(1, -1);
        // W0·x without bias: reuse the base output unless dropout changed the input.
        var baseNoBias = Dropout == 0 || !Layer.training
            ? (Layer.bias is null ? baseOutput : baseOutput - Layer.bias)
            : F.linear(input.to(Layer.weight.dtype), Layer.WeightOutIn());
        var result = (scale - 1) * baseNoBias.to(scale.dtype) + scale * LoraOutput(input);
        return result.to(baseOutput.dtype).MoveToOuterDisposeScope();
    }

    public override void Merge(bool safe)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var delta = DeltaWeight();
        var norm = RowNorm(delta);
        var merged = (Magnitude.weight.to(ScalarType.Float32) / norm).view(-1, 1) * (Layer.WeightOutIn().to(ScalarType.Float32) + delta);
        Layer.WriteWeight(Layer.OrientLikeWeight(merged).to(Layer.weight.dtype), safe, Name);
        mergedNorm?.Dispose();
        mergedNorm = norm.DetachFromDisposeScope();
    }

    public override void Unmerge()
    {
        if (mergedNorm is null) throw new InvalidOperationException("DoRA adapter was not merged");
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var factor = (Magnitude.weight.to(ScalarType.Float32) / mergedNorm).view(-1, 1);
        var original = Layer.WeightOutIn().to(ScalarType.Float32) / factor - DeltaWeight();
        Layer.WriteWeight(Layer.OrientLikeWeight(original).to(Layer.weight.dtype), safe: false, Name);
        mergedNorm.Dispose();
        mergedNorm = null;
    }
}
