using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>
/// A group-wise linear map in → out in <c>groups</c> blocks (LaVIN's 1×1 Conv1d with groups = k): input
/// channels of group i only produce outputs of group i, so the dense equivalent is block-diagonal.
/// The weight is stored [out, in/groups] (the conv weight without its kernel axis), with a bias.
/// </summary>
public sealed class GroupedLinear : nn.Module<Tensor, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] TorchSharp.Modules.Parameter _weight;
    [TorchSharp.Utils.ComponentName(Name = "bias")] TorchSharp.Modules.Parameter _bias;

    /// <summary>Zero-initialised, as LaVIN's up-projections: an attached adapter starts as the identity.</summary>
    public GroupedLinear(long inFeatures, long outFeatures, int groups, Device? device = null) : base("GroupedLinear")
    {
        if (groups < 1 || inFeatures % groups != 0 || outFeatures % groups != 0)
            throw new BadInputException($"groups must divide both widths: {inFeatures} → {outFeatures} in {groups} groups");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Groups = groups;
        _weight = new TorchSharp.Modules.Parameter(torch.zeros(outFeatures, inFeatures / groups, device: device));
        _bias = new TorchSharp.Modules.Parameter(torch.zeros(outFeatures, device: device));
        RegisterComponents();
    }

    public long InFeatures { get; }
    public long OutFeatures { get; }
    public int Groups { get; }

    public TorchSharp.Modules.Parameter weight { get => _weight; private set { _weight = value; ConditionallyRegisterParameter("weight", value); } }
    public TorchSharp.Modules.Parameter bias { get => _bias; private set { _bias = value; ConditionallyRegisterParameter("bias", value); } }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var shape = x.shape;
        long rows = x.numel() / InFeatures;
        var blocks = _weight.view(Groups, OutFeatures / Groups, InFeatures / Groups);               // [k, out/k, in/k]
        var grouped = x.reshape(rows, Groups, InFeatures / Groups).transpose(0, 1);                // [k, rows, in/k]
        var y = torch.bmm(grouped, blocks.transpose(1, 2)).transpose(0, 1).reshape(rows, OutFeatures) + _bias;
        return y.view(shape[..^1].Append(OutFeatures).ToArray()).MoveToOuterDisposeScope();
    }

    /// <summary>The equivalent dense weight [out, in]: the groups' blocks on the diagonal, zeros elsewhere.</summary>
    public Tensor DenseWeight()
    {
        var blocks = _weight.view(Groups, OutFeatures / Groups, InFeatures / Groups);
        return torch.block_diag(Enumerable.Range(0, Groups).Select(g => blocks[g]).ToArray());
    }
}
