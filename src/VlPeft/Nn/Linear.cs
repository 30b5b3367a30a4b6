using TorchSharp;
using VlPeft.Nn.Quantization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Nn;

/// <summary>
/// The only linear layer VlPeft models use: y = x·Wᵀ + b, plus any attached named adapters.
/// Its own parameters keep their HF names (<c>weight</c>, <c>bias</c>); adapters register their
/// tensors in containers named like HF PEFT's (<c>lora_A.default.weight</c>). Forward, merge and
/// unmerge follow HF PEFT's BaseTunerLayer: disabled → base only (unmerging first); merged →
/// base only; otherwise base + Σ active adapters.
/// </summary>
public sealed class Linear : nn.Module<Tensor, Tensor>, IQuantizableWeight
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] TorchSharp.Modules.Parameter _weight;
    [TorchSharp.Utils.ComponentName(Name = "bias")] TorchSharp.Modules.Parameter? _bias;

    readonly List<LinearAdapter> adapters = new();
    readonly List<string> merged = new();
    HashSet<string> active = new() { "default" };

    /// <param name="fanInFanOut">Weight stored [in, out] as in GPT-2's Conv1D (HF PEFT's fan_in_fan_out).</param>
    public Linear(long inFeatures, long outFeatures, bool hasBias = true, bool fanInFanOut = false,
        ScalarType? dtype = null, Device? device = null) : base("Linear")
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        FanInFanOut = fanInFanOut;
        // nn.Linear's default init: kaiming_uniform(a=√5) on the weight = U(±1/√in), bias the same.
        double bound = inFeatures > 0 ? 1.0 / Math.Sqrt(inFeatures) : 0;
        long[] shape = fanInFanOut ? new[] { inFeatures, outFeatures } : new[] { outFeatures, inFeatures };
        // Under DeferWeightAllocation the weight is only a shape on the meta device until the checkpoint loader fills it.
        _weight = new TorchSharp.Modules.Parameter(deferWeights ? torch.empty(shape, dtype: dtype, device: torch.META) : Uniform(shape, bound, dtype, device));
        _bias = hasBias ? new TorchSharp.Modules.Parameter(Uniform(new[] { outFeatures }, bound, dtype, device)) : null;
        RegisterComponents();
    }

    [ThreadStatic] static bool deferWeights;

    /// <summary>Whether layers built now wait for a checkpoint's values (<see cref="DeferWeightAllocation"/>).</summary>
    internal static bool WeightsDeferred => deferWeights;

    /// <summary>
    /// While the returned handle lives, new layers leave their weight unallocated (meta device): a checkpoint loader then
    /// gives each its values (<see cref="LoadWeight"/>), quantized or not, so a model never holds a second full copy.
    /// </summary>
    public static IDisposable DeferWeightAllocation()
    {
        bool previous = deferWeights;
        deferWeights = true;
        return new Restore(() => deferWeights = previous);
    }

    sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    /// <summary>Whether the weight still waits for its values (<see cref="DeferWeightAllocation"/>).</summary>
    public bool WeightPending => Quantized is null && _weight.device_type == DeviceType.META;

    /// <summary>
    /// Gives a pending weight its values as stored in a checkpoint ([out, in], or [in, out] for fan_in_fan_out), in the
    /// layer's dtype; with <paramref name="quantizeTo"/>, quantized straight away (the full-precision values are not kept).
    /// </summary>
    public void LoadWeight(Tensor value, string? quantizeTo)
    {
        if (quantizeTo is null or QuantizedWeight.None)
        {
            weight = new TorchSharp.Modules.Parameter(value.to(_weight.dtype).contiguous().DetachFromDisposeScope(), _weight.requires_grad);
            return;
        }
        using var scope = torch.NewDisposeScope();
        _weight.requires_grad = false;   // frozen: quantized weights are not trained
        UseQuantized(QuantizedWeight.Create(quantizeTo, FanInFanOut ? value.t() : value), value.device);
    }

    static Tensor Uniform(long[] shape, double bound, ScalarType? dtype, Device? device)
    {
        var t = torch.empty(shape, dtype: dtype, device: device);
        if (t.device_type != DeviceType.META)
            using (torch.no_grad()) t.uniform_(-bound, bound);
        return t;
    }

    public long InFeatures { get; }
    public long OutFeatures { get; }
    public bool FanInFanOut { get; }

    // Setters exist for TorchSharp's module.to(dtype), which replaces parameters through these properties.
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

    public IReadOnlyList<LinearAdapter> Adapters => adapters;
    public IReadOnlyList<string> MergedAdapters => merged;
    public IReadOnlyCollection<string> ActiveAdapters => active;
    public bool AdaptersDisabled { get; private set; }
    public bool Merged => merged.Count > 0;

    public override Tensor forward(Tensor x)
    {
        if (AdaptersDisabled)
        {
            if (Merged) Unmerge();
            return Base(x);
        }
        if (!Merged && active.Count == 1)
        {
            var only = adapters.FirstOrDefault(a => active.Contains(a.Name));
            if (only?.FusedForward(x) is Tensor fused) return fused;
        }
        var baseOutput = Base(x);
        if (Merged) return baseOutput;
        var y = baseOutput;
        foreach (var adapter in adapters)
            if (active.Contains(adapter.Name))
                y = adapter.AddTo(y, x, baseOutput);
        return y;
    }

    /// <summary>W0·x + b0 with the stored weight (transposed for fan_in_fan_out).</summary>
    public Tensor Base(Tensor x)
    {
        if (Quantized is not null) return QuantizedLinearFunction.apply(x, Quantized, _bias!);
        var weight = FanInFanOut ? _weight.t() : _weight;
        if (x.dim() <= 2 || x.is_contiguous()) return F.linear(x, weight, _bias);
        // A non-contiguous >2-D input (a slice of a sequence, such as the Q-Former's query rows): libtorch's matmul expands a
        // weight that needs no gradient to [B, in, out] and copies it. Folding the input to 2-D copies the input instead,
        // which is far smaller (bench strided-linear, forward + backward at [16, 32 of 48, 768]: bf16 16.3 → 7.9 ms, fp32 6.2 → 5.1 ms).
        using var scope = torch.NewDisposeScope();
        var y = F.linear(x.reshape(-1, x.shape[^1]), weight, _bias);
        return y.view(x.shape[..^1].Append(y.shape[^1]).ToArray()).MoveToOuterDisposeScope();
    }

    /// <summary>A ΔW given as [out, in], laid out like the stored weight.</summary>
    public Tensor OrientLikeWeight(Tensor deltaOutIn) => FanInFanOut ? deltaOutIn.t() : deltaOutIn;

    /// <summary>The stored weight as [out, in], whatever the storage layout (a quantized weight dequantized, not kept).</summary>
    public Tensor WeightOutIn() => Quantized?.Dequantize(_weight.dtype) ?? (FanInFanOut ? _weight.t() : _weight);

    /// <summary>The frozen weight in quantized form (<see cref="Quantize"/>), or null when it is held in full precision.</summary>
    public QuantizedWeight? Quantized { get; private set; }

    /// <summary>
    /// Stores the frozen weight quantized (nf4 or int8): forward dequantizes it into the input's dtype per matmul. The
    /// weight parameter becomes a zero-stride placeholder of the same shape and dtype, so counts and dtype queries hold.
    /// </summary>
    public void Quantize(string format, bool doubleQuant = true)
    {
        if (format == QuantizedWeight.None) return;
        using var scope = torch.NewDisposeScope();
        UseQuantized(QuantizedWeight.Create(format, WeightOutIn(), doubleQuant));
    }

    /// <summary>Takes a quantized weight made elsewhere (a bitsandbytes checkpoint), checking its shape.</summary>
    public void UseQuantized(QuantizedWeight quantized, Device? device = null)
    {
        if (_weight.requires_grad) throw new BadInputException("a trainable weight cannot be quantized: quantize frozen parts only");
        if (Merged) throw new InvalidOperationException("unmerge the adapters before quantizing the weight");
        if (quantized.OutFeatures != OutFeatures || quantized.InFeatures != InFeatures)
            throw new BadInputException($"quantized weight is [{quantized.OutFeatures}, {quantized.InFeatures}]; the layer's is [{OutFeatures}, {InFeatures}]");
        Quantized?.Dispose();
        Quantized = quantized;
        weight = Placeholder(_weight.dtype, device ?? (_weight.device_type == DeviceType.META ? torch.CPU : _weight.device));
    }

    TorchSharp.Modules.Parameter Placeholder(ScalarType dtype, Device device) =>
        QuantizedWeight.Placeholder(FanInFanOut ? new[] { InFeatures, OutFeatures } : new[] { OutFeatures, InFeatures }, dtype, device);

    /// <summary>A dtype move keeps a quantized weight's codes: only the placeholder (the compute dtype) changes, without allocating.</summary>
    protected override nn.Module _to(ScalarType dtype, bool nonBlocking)
    {
        if (Quantized is null) return base._to(dtype, nonBlocking);
        weight = new TorchSharp.Modules.Parameter(torch.zeros(1, dtype: _weight.dtype, device: _weight.device), requires_grad: false);
        var result = base._to(dtype, nonBlocking);
        weight = Placeholder(dtype, _weight.device);
        return result;
    }

    /// <summary>Back to a full-precision weight holding the dequantized values (what a merge adds to).</summary>
    public void Dequantize()
    {
        if (Quantized is null) return;
        using var scope = torch.NewDisposeScope();
        var dense = OrientLikeWeight(Quantized.Dequantize(_weight.dtype)).contiguous().DetachFromDisposeScope();
        Quantized.Dispose();
        Quantized = null;
        weight = new TorchSharp.Modules.Parameter(dense, requires_grad: false);
    }

    /// <summary>The container for one kind of adapter state, created on first use.</summary>
    public AdapterContainer Container(string kind)
    {
        var existing = named_children().Where(c => c.name == kind).Select(c => c.module).FirstOrDefault();
        if (existing is AdapterContainer container) return container;
        if (existing != null) throw new InvalidOperationException($"'{kind}' is already a submodule that is not an adapter container");
        container = new AdapterContainer(kind);
        register_module(kind, container);
        return container;
    }

    public void Attach(LinearAdapter adapter)
    {
        if (adapters.Any(a => a.Name == adapter.Name && a.GetType() != adapter.GetType()))
            throw new InvalidOperationException($"adapter '{adapter.Name}' is already attached with another method");
        adapters.RemoveAll(a => a.Name == adapter.Name);
        adapters.Add(adapter);
    }

    /// <summary>Removes an adapter and its tensors. A merged adapter must be unmerged first.</summary>
    public void Detach(string name)
    {
        if (merged.Contains(name)) throw new InvalidOperationException($"adapter '{name}' is merged; unmerge it first");
        foreach (var adapter in adapters.Where(a => a.Name == name).ToList())
        {
            foreach (var kind in adapter.ContainerKinds)
            {
                var container = Container(kind);
                container.Remove(name);
                if (container.IsEmpty) register_module(kind, null!);
            }
            adapters.Remove(adapter);
        }
        active.Remove(name);
    }

    public void SetActiveAdapters(IEnumerable<string> names) => active = names.ToHashSet();

    public void EnableAdapters(bool enabled) => AdaptersDisabled = !enabled;

    /// <summary>Merges the given (default: active) adapters not yet merged, in order.</summary>
    public void Merge(IEnumerable<string>? names = null, bool safe = false)
    {
        var wanted = (names ?? active).ToHashSet();
        var toMerge = adapters.Where(a => wanted.Contains(a.Name) && !merged.Contains(a.Name)).ToList();
        if (toMerge.Count > 0) Dequantize();   // merged into the dequantized weight: the one the adapter was trained against
        foreach (var adapter in toMerge)
        {
            adapter.Merge(safe);
            merged.Add(adapter.Name);
        }
    }

    /// <summary>Unmerges every merged adapter in reverse merge order.</summary>
    public void Unmerge()
    {
        for (int i = merged.Count - 1; i >= 0; i--)
        {
            adapters.First(a => a.Name == merged[i]).Unmerge();
            merged.RemoveAt(i);
        }
    }

    /// <summary>Drops all adapters, keeping whatever is merged into the weight (merge_and_unload / unload).</summary>
    public void Unload()
    {
        merged.Clear();
        foreach (var name in adapters.Select(a => a.Name).Distinct().ToList()) Detach(name);
    }

    /// <summary>
    /// Folds an affine map of this layer's input into it: y = W·(x + M·x + c) + b becomes W′ = W + W·M,
    /// b′ = b + W·c (a bias is created if the layer had none). Used to re-parameterise adapters before it.
    /// </summary>
    public void FoldInputMap(Tensor matrix, Tensor shift, bool safe, string adapter)
    {
        if (Merged) throw new BadInputException($"cannot fold adapter '{adapter}' into a layer whose own adapters ({string.Join(", ", merged)}) are merged: their unmerge would no longer be exact");
        Dequantize();
        using var scope = torch.NewDisposeScope();
        var w = WeightOutIn().to(ScalarType.Float32);
        var newWeight = w + w.matmul(matrix.to(ScalarType.Float32));
        var newBias = (_bias?.to(ScalarType.Float32) ?? torch.zeros(OutFeatures, device: w.device)) + w.matmul(shift.to(ScalarType.Float32));
        WriteWeight(OrientLikeWeight(newWeight).to(_weight.dtype), safe, adapter);
        if (_bias is null) EnsureBias();
        WriteBias(newBias.to(_bias!.dtype), safe, adapter);
    }

    /// <summary>Gives a bias-free layer a zero bias (a merged checkpoint whose config now says the layer has one).</summary>
    public void EnsureBias()
    {
        // Detached from any dispose scope of the caller: the layer owns it from now on.
        if (_bias is null) bias = new TorchSharp.Modules.Parameter(torch.zeros(OutFeatures, dtype: _weight.dtype, device: _weight.device).DetachFromDisposeScope(), requires_grad: false);
    }

    /// <summary>Replaces the weight's values; with <paramref name="safe"/>, refuses non-finite results.</summary>
    internal void WriteWeight(Tensor value, bool safe, string adapter) => Write(_weight, value, safe, adapter);

    internal void WriteBias(Tensor value, bool safe, string adapter) => Write(_bias!, value, safe, adapter);

    static void Write(Tensor target, Tensor value, bool safe, string adapter)
    {
        if (safe && !value.isfinite().all().item<bool>())
            throw new BadInputException($"NaNs detected in the merged weights. The adapter '{adapter}' seems to be broken");
        using (torch.no_grad()) target.copy_(value);
    }
}
