using TorchSharp;
using VlPeft.Nn.Quantization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Nn;

/// <summary>
/// nn.Embedding as a managed lookup (index_select): TorchSharp's native Embedding allocates a real
/// CPU table even on the meta device, which rules it out for counting 7B models without weights.
/// A frozen token table may be held quantized (<c>model.quantize_embeddings</c>): a lookup then decodes only the rows
/// it picks, and a head tied to the table (<see cref="Project"/>) runs the quantized matmul.
/// </summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>, IQuantizableWeight
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] TorchSharp.Modules.Parameter _weight;

    /// <param name="tokenTable">The table of a vocabulary (a language model's token embeddings): the one kind of table
    /// <c>model.quantize_embeddings</c> quantizes (position and type tables are small, and coarse rounding there moves
    /// every token).</param>
    public Embedding(long count, long dim, Device? device = null, bool tokenTable = false) : base("Embedding")
    {
        Count = count;
        Dim = dim;
        IsTokenTable = tokenTable;
        // Under Linear.DeferWeightAllocation the table is only a shape on the meta device until the checkpoint loader
        // fills it (LoadWeight): initialising it would fault in its fp32 pages (a 7B vocabulary: 524 MB) only to overwrite them.
        var table = Linear.WeightsDeferred ? torch.empty(count, dim, device: torch.META) : torch.empty(count, dim, device: device);
        if (table.device_type != DeviceType.META) using (torch.no_grad()) table.normal_();
        _weight = new TorchSharp.Modules.Parameter(table);
        RegisterComponents();
    }

    public long Count { get; }
    public long Dim { get; }
    public bool IsTokenTable { get; }

    public TorchSharp.Modules.Parameter weight { get => _weight; private set { _weight = value; ConditionallyRegisterParameter("weight", value); } }

    /// <summary>The frozen table in quantized form, or null when it is held in full precision.</summary>
    public QuantizedWeight? Quantized { get; private set; }

    public bool WeightPending => Quantized is null && _weight.device_type == DeviceType.META;

    public override Tensor forward(Tensor ids)
    {
        var rows = Quantized?.DequantizeRows(ids, _weight.dtype) ?? _weight.index_select(0, ids.reshape(-1));
        return rows.view(ids.shape.Append(Dim).ToArray());
    }

    /// <summary>hidden · tableᵀ in the hidden states' dtype: the output head of a model whose head is tied to this table (OPT, GPT-2).</summary>
    public Tensor Project(Tensor hidden) => Quantized is not null
        ? QuantizedLinearFunction.apply(hidden, Quantized, null!)
        : F.linear(hidden, _weight.to(hidden.dtype));

    public void LoadWeight(Tensor value, string? quantizeTo)
    {
        if (quantizeTo is null or QuantizedWeight.None)
        {
            weight = new TorchSharp.Modules.Parameter(value.to(_weight.dtype).contiguous().DetachFromDisposeScope(), _weight.requires_grad);
            return;
        }
        using var scope = torch.NewDisposeScope();
        _weight.requires_grad = false;   // frozen: quantized tables are not trained
        UseQuantized(QuantizedWeight.Create(quantizeTo, value), value.device);
    }

    public void Quantize(string format, bool doubleQuant = true)
    {
        if (format == QuantizedWeight.None) return;
        using var scope = torch.NewDisposeScope();
        UseQuantized(QuantizedWeight.Create(format, Quantized?.Dequantize(_weight.dtype) ?? _weight, doubleQuant));
    }

    public void UseQuantized(QuantizedWeight quantized, Device? device = null)
    {
        if (_weight.requires_grad) throw new BadInputException("a trainable embedding table cannot be quantized: quantize frozen parts only");
        if (quantized.OutFeatures != Count || quantized.InFeatures != Dim)
            throw new BadInputException($"quantized table is [{quantized.OutFeatures}, {quantized.InFeatures}]; the embedding's is [{Count}, {Dim}]");
        Quantized?.Dispose();
        Quantized = quantized;
        weight = QuantizedWeight.Placeholder(new[] { Count, Dim }, _weight.dtype, device ?? (_weight.device_type == DeviceType.META ? torch.CPU : _weight.device));
    }

    /// <summary>A dtype move keeps a quantized table's codes: only the placeholder (the compute dtype) changes, without allocating.</summary>
    protected override nn.Module _to(ScalarType dtype, bool nonBlocking)
    {
        if (Quantized is null) return base._to(dtype, nonBlocking);
        weight = QuantizedWeight.Placeholder(new[] { Count, Dim }, dtype, _weight.device);
        return this;
    }

    public void Dequantize()
    {
        if (Quantized is null) return;
        var dense = Quantized.Dequantize(_weight.dtype).DetachFromDisposeScope();
        Quantized.Dispose();
        Quantized = null;
        weight = new TorchSharp.Modules.Parameter(dense, requires_grad: false);
    }
}
