using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>
/// nn.Embedding as a managed lookup (index_select): TorchSharp's native Embedding allocates a real
/// CPU table even on the meta device, which rules it out for counting 7B models without weights.
/// </summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] TorchSharp.Modules.Parameter _weight;

    public Embedding(long count, long dim, Device? device = null) : base("Embedding")
    {
        var table = torch.empty(count, dim, device: device);
        // A table the checkpoint loader will fill (Linear.DeferWeightAllocation) stays untouched: initialising it would
        // fault in its fp32 pages (a 7B vocabulary: 524 MB) only to overwrite them.
        if (table.device_type != DeviceType.META && !Linear.WeightsDeferred) using (torch.no_grad()) table.normal_();
        _weight = new TorchSharp.Modules.Parameter(table);
        RegisterComponents();
    }

    public TorchSharp.Modules.Parameter weight { get => _weight; private set { _weight = value; ConditionallyRegisterParameter("weight", value); } }

    public override Tensor forward(Tensor ids) =>
        _weight.index_select(0, ids.reshape(-1)).view(ids.shape.Append(_weight.shape[1]).ToArray());
}
