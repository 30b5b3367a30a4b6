using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;

namespace VlPeft.Peft;

/// <summary>What a PEFT method adapts: linear layers (delta adapters) or adapter sites (module adapters).</summary>
public enum TargetKind
{
    /// <summary>LoRA, DoRA, AdaLoRA, LoHa: a ΔW (or its product form) added to an <see cref="Nn.Linear"/>.</summary>
    Linear,
    /// <summary>Bottleneck adapters, RepAdapter, routed adapters: a module applied at an <see cref="AdapterSite"/>.</summary>
    Site,
}

/// <summary>One target an adapter was attached to: the module path and the adapter built for it.</summary>
public sealed record AttachedTarget(string Path, LinearAdapter? LinearAdapter, AdapterSite? Site, nn.Module<Tensor, Tensor>? SiteAdapter);

/// <summary>A tuner's training state that checkpoints must carry (tensors + JSON), so a resumed run continues exactly.</summary>
public sealed record TunerState(IReadOnlyDictionary<string, Tensor> Tensors, string Json);

/// <summary>
/// One attached adapter's method-specific behaviour (HF PEFT's tuners/&lt;method&gt;/model.py): it builds the
/// adapter for each target, and has hooks the shared code calls — extra loss, after the optimizer step,
/// checkpoint state, the save transform, whether it can merge. <see cref="PeftModel"/>, the trainer,
/// checkpoints and <see cref="PeftFiles"/> call only these, so nothing outside a method's folder tests for it.
/// </summary>
public abstract class PeftTuner
{
    protected PeftTuner(PeftConfig config, string adapterName)
    {
        Config = config;
        AdapterName = adapterName;
    }

    public PeftConfig Config { get; }
    public string AdapterName { get; }

    public virtual TargetKind TargetKind => TargetKind.Linear;

    /// <summary>The adapter for one linear target (delta methods).</summary>
    public virtual LinearAdapter CreateLinearAdapter(string path, Nn.Linear layer) =>
        throw new NotSupportedException($"{Config.PeftType} does not adapt linear layers");

    /// <summary>The module for one adapter site (module methods); <paramref name="width"/> is the hidden size there.</summary>
    public virtual nn.Module<Tensor, Tensor> CreateSiteAdapter(string path, AdapterSite site, long width) =>
        throw new NotSupportedException($"{Config.PeftType} does not attach at adapter sites");

    /// <summary>Called once every target has its adapter (AdaLoRA builds its allocator here).</summary>
    public virtual void OnAttached(IReadOnlyList<AttachedTarget> targets) { }

    /// <summary>A term added to the training loss (AdaLoRA's orthogonal penalty); null for none.</summary>
    public virtual Tensor? ExtraLoss() => null;

    /// <summary>After optimizer.step(), before zero_grad() (AdaLoRA's rank allocation reads the gradients).</summary>
    public virtual void AfterOptimizerStep(int globalStep) { }

    /// <summary>State a checkpoint must hold besides the trainable tensors and the optimizer; null for none.</summary>
    public virtual TunerState? ExportState() => null;

    public virtual void ImportState(TunerState state) { }

    /// <summary>Adapter state kinds that are neither trained nor saved (AdaLoRA's ranknum).</summary>
    public virtual bool IsBufferKind(string containerKind) => false;

    /// <summary>The saved-file key of an adapter tensor (default: unchanged).</summary>
    public virtual string SavedKey(string key) => key;

    /// <summary>The saved value of an adapter tensor (AdaLoRA slices by its rank pattern).</summary>
    public virtual Tensor SavedValue(string key, Tensor value) => value;

    /// <summary>The config as saved: with what training learned (AdaLoRA's rank_pattern).</summary>
    public virtual PeftConfig EffectiveConfig => Config;

    /// <summary>Why this adapter cannot be folded into the base weights, or null if it can.</summary>
    public virtual string? MergeRefusal => TargetKind == TargetKind.Site
        ? $"{Config.PeftType} adapters at adapter sites cannot be folded into the base weights"
        : null;

    /// <summary>Folds a site adapter into the layers after its site (only called when <see cref="MergeRefusal"/> is null).</summary>
    public virtual void MergeSite(AttachedTarget target, bool safe) =>
        throw new NotSupportedException($"{Config.PeftType} adapters cannot be folded");

    /// <summary>
    /// A rank for one layer, refused when it is not positive or exceeds in + out: beyond min(in, out) a rank adds nothing,
    /// and a typo such as r = 100000 would otherwise allocate until the machine runs out of memory.
    /// </summary>
    protected static int CheckedRank(string path, Nn.Linear layer, int rank, string key = "r")
    {
        long bound = layer.InFeatures + layer.OutFeatures;
        if (rank < 1 || rank > bound)
            throw new BadInputException($"{key} = {rank} for '{path}' must be between 1 and the layer's in + out = {bound} " +
                $"(a {layer.InFeatures} → {layer.OutFeatures} layer; ranks above {Math.Min(layer.InFeatures, layer.OutFeatures)} add nothing)");
        return rank;
    }

    /// <summary>The rank per adapted module (learned ranks for AdaLoRA), or null where rank does not apply.</summary>
    public virtual IReadOnlyDictionary<string, int>? Ranks() => null;
}
