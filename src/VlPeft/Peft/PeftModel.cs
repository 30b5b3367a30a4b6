using TorchSharp;
using VlPeft.Nn;
using VlPeft.Peft.AdaLora;
using VlPeft.Peft.LoHa;
using VlPeft.Peft.Lora;
using static TorchSharp.torch;

namespace VlPeft.Peft;

/// <summary>
/// Named adapters attached to a model (HF PEFT's PeftModel + tuner in one): attach by config,
/// choose the active adapters, freeze everything else, merge/unmerge/unload, and the AdaLoRA
/// allocator and penalty. The model itself is untouched apart from the attached adapters, so
/// parameter paths stay the HF names (see <see cref="PeftFiles"/> for the saved names).
/// </summary>
public sealed class PeftModel
{
    readonly Dictionary<string, PeftConfig> configs = new();
    readonly Dictionary<string, List<(string Path, LinearAdapter Adapter)>> attached = new();
    readonly Dictionary<string, RankAllocator> allocators = new();
    readonly Dictionary<string, ModulesToSave> fullyTrained = new();
    readonly List<string> trainedInFull = new();
    List<string> active = new();

    PeftModel(nn.Module model) => Model = model;

    public nn.Module Model { get; }
    public IReadOnlyDictionary<string, PeftConfig> Configs => configs;
    public IReadOnlyList<string> ActiveAdapters => active;
    public bool AdaptersDisabled { get; private set; }

    /// <summary>HF get_peft_model: attach <paramref name="config"/> as an active, trainable adapter.</summary>
    public static PeftModel Create(nn.Module model, PeftConfig config, string adapterName = "default")
    {
        var peft = new PeftModel(model);
        peft.AddAdapter(adapterName, config);
        peft.SetAdapter(adapterName);
        return peft;
    }

    /// <summary>Attaches another named adapter; like HF, it is neither active nor trainable until <see cref="SetAdapter"/>.</summary>
    public void AddAdapter(string name, PeftConfig config)
    {
        if (configs.ContainsKey(name)) throw new InvalidOperationException($"adapter '{name}' already exists");
        config.Validate();
        if (config is AdaLoraConfig && !config.InferenceMode && configs.Values.Any(c => c is AdaLoraConfig { InferenceMode: false }))
            throw new InvalidOperationException("AdaLoRA allows only one trainable adapter (HF PEFT); load others with inference mode");
        if (configs.Values.Any(c => c.PeftType != config.PeftType))
            throw new InvalidOperationException($"this model already carries {configs.Values.First().PeftType} adapters; mixing methods is not supported");

        var targets = TargetMatcher.FindTargets(Model, config);
        var list = new List<(string, LinearAdapter)>();
        foreach (var (path, layer) in targets)
        {
            var adapter = CreateAdapter(config, name, path, layer);
            layer.Attach(adapter);
            layer.SetActiveAdapters(active);
            list.Add((path, adapter));
        }
        configs[name] = config;
        attached[name] = list;
        if (config is AdaLoraConfig ada)
        {
            var modules = list.Select(t => (t.Item1, (AdaLoraAdapter)t.Item2)).ToList();
            if (ada.RankPattern != null)
                foreach (var (path, adapter) in modules)
                    if (ada.RankPattern.TryGetValue($"{path}.lora_E", out var keep)) adapter.ResizeTo(keep);
            allocators[name] = new RankAllocator(ada, modules);
        }
        if (config.ModulesToSave is { Count: > 0 } save)
            fullyTrained[name] = new ModulesToSave(Model, save);
        UpdateTrainable();
    }

    static LinearAdapter CreateAdapter(PeftConfig config, string name, string path, Linear layer)
    {
        switch (config)
        {
            case LoraConfig lora:
                var (rank, alpha) = lora.ForModule(path);
                return lora.UseDora
                    ? new DoraAdapter(name, layer, rank, alpha, lora.LoraDropout, lora.UseRslora, lora.InitLoraWeights, lora.LoraBias)
                    : new LoraAdapter(name, layer, rank, alpha, lora.LoraDropout, lora.UseRslora, lora.InitLoraWeights, lora.LoraBias);
            case AdaLoraConfig ada:
                return new AdaLoraAdapter(name, layer, ada.InitR, ada.Scaling, ada.LoraDropout);
            case LoHaConfig loha:
                var (r, a) = loha.ForModule(path);
                return new LoHaAdapter(name, layer, r, a, loha.InitWeights);
            default:
                throw new NotSupportedException($"no layer adapter for {config.PeftType}");
        }
    }

    /// <summary>The layers an adapter is attached to, with their paths.</summary>
    public IReadOnlyList<(string Path, LinearAdapter Adapter)> AdaptedLayers(string name = "default") =>
        attached.TryGetValue(name, out var list) ? list : throw new KeyNotFoundException($"no adapter named '{name}'");

    /// <summary>Makes exactly these adapters active and (unless inference-mode) trainable.</summary>
    public void SetAdapter(params string[] names)
    {
        foreach (var n in names)
            if (!configs.ContainsKey(n)) throw new KeyNotFoundException($"no adapter named '{n}'");
        active = names.ToList();
        foreach (var layer in AllLayers()) layer.SetActiveAdapters(active);
        UpdateTrainable();
    }

    IEnumerable<Linear> AllLayers() => attached.Values.SelectMany(l => l).Select(t => t.Adapter.Layer).Distinct();

    /// <summary>HF disable_adapter_layers / enable_adapter_layers (merged adapters are unmerged on the next forward).</summary>
    public void DisableAdapters()
    {
        if (AdaptersDisabled) return;
        foreach (var layer in AllLayers()) layer.EnableAdapters(false);
        foreach (var save in fullyTrained.Values) save.UseOriginal();
        AdaptersDisabled = true;
    }

    public void EnableAdapters()
    {
        if (!AdaptersDisabled) return;
        foreach (var layer in AllLayers()) layer.EnableAdapters(true);
        foreach (var save in fullyTrained.Values) save.UseTrained();
        AdaptersDisabled = false;
    }

    /// <summary>
    /// Freezes every parameter, then unfreezes the active adapters' tensors (not inference-mode
    /// ones, not AdaLoRA's ranknum), biases per the config's <c>bias</c>, and modules_to_save.
    /// </summary>
    void UpdateTrainable()
    {
        foreach (var (_, p) in Model.named_parameters()) p.requires_grad = false;
        foreach (var name in active)
        {
            var config = configs[name];
            if (config.InferenceMode) continue;
            foreach (var (_, p, _) in AdapterParameterEntries(name).Where(t => t.Trainable)) p.requires_grad = true;
            string bias = config.BiasMode;
            if (bias == "all")
                foreach (var (n, p) in OrdinaryParameters().Where(t => t.Name.EndsWith(".bias", StringComparison.Ordinal) || t.Name == "bias"))
                    p.requires_grad = true;
            if (bias == "lora_only")
                foreach (var (_, adapter) in attached[name])
                    if (adapter.Layer.bias is { } b) b.requires_grad = true;
            if (fullyTrained.TryGetValue(name, out var save))
                foreach (var (_, p) in save.Parameters) p.requires_grad = true;
        }
        foreach (var (_, p) in InFullParameters()) p.requires_grad = true;
    }

    /// <summary>
    /// Also train these parts of the base model in full (path prefixes such as <c>query_tokens</c> or
    /// <c>qformer</c>), as the Q-Former PEFT paper does for the query tokens and the projection.
    /// They are saved with the adapter under their own names, like modules_to_save.
    /// </summary>
    public void TrainInFull(IEnumerable<string> prefixes)
    {
        trainedInFull.AddRange(prefixes);
        UpdateTrainable();
    }

    public IReadOnlyList<string> TrainedInFull => trainedInFull;

    /// <summary>Base-model parameters trained in full through <see cref="TrainInFull"/>.</summary>
    public IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> InFullParameters() =>
        OrdinaryParameters().Where(p => trainedInFull.Any(prefix => p.Name == prefix || p.Name.StartsWith(prefix + ".", StringComparison.Ordinal)));

    /// <summary>Parameters of the model that are not adapter tensors (the base model's own).</summary>
    public IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> OrdinaryParameters() => TargetMatcher.OrdinaryParameters(Model);

    /// <summary>
    /// An adapter's tensors with their in-memory names (<c>path.lora_A.default.weight</c>,
    /// <c>path.lora_E.default</c>) and whether they are trained.
    /// </summary>
    public IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter, bool Trainable)> AdapterParameterEntries(string name)
    {
        foreach (var (path, adapter) in AdaptedLayers(name))
            foreach (var kind in adapter.ContainerKinds)
            {
                var container = adapter.Layer.Container(kind);
                bool trainable = kind != AdaLoraAdapter.RankNumKind;
                if (container.Module(name) is { } module)
                    foreach (var (pn, p) in module.named_parameters())
                        yield return ($"{path}.{kind}.{name}.{pn}", p, trainable);
                else
                    yield return ($"{path}.{kind}.{name}", container.Parameter(name), trainable);
            }
    }

    /// <summary>The modules_to_save parameters of an adapter (trained in full, saved under their own names).</summary>
    public IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> FullyTrainedParameters(string name) =>
        fullyTrained.TryGetValue(name, out var save) ? save.Parameters : Array.Empty<(string, TorchSharp.Modules.Parameter)>();

    /// <summary>Parameters an optimizer should see: those that require grad.</summary>
    public IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> TrainableParameters() =>
        Model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter));

    public void Merge(bool safe = false, IEnumerable<string>? names = null)
    {
        var wanted = (names ?? active).ToList();
        foreach (var name in wanted)
            foreach (var (_, adapter) in AdaptedLayers(name))
                adapter.Layer.Merge(new[] { name }, safe);
    }

    public void Unmerge()
    {
        foreach (var layer in AllLayers()) layer.Unmerge();
    }

    /// <summary>HF merge_and_unload: fold the active adapters into the weights and remove all adapters.</summary>
    public nn.Module MergeAndUnload(bool safe = false)
    {
        Merge(safe);
        return Unload();
    }

    /// <summary>HF unload: remove all adapters, keeping whatever was merged; the base model is returned.</summary>
    public nn.Module Unload()
    {
        foreach (var layer in AllLayers()) layer.Unload();
        attached.Clear();
        configs.Clear();
        allocators.Clear();
        fullyTrained.Clear();
        active.Clear();
        return Model;
    }

    public void DeleteAdapter(string name)
    {
        foreach (var (_, adapter) in AdaptedLayers(name)) adapter.Layer.Detach(name);
        attached.Remove(name);
        configs.Remove(name);
        allocators.Remove(name);
        if (fullyTrained.Remove(name, out var save)) save.UseOriginal();
        active.Remove(name);
        UpdateTrainable();
    }

    /// <summary>An adapter's config including what training has learned (AdaLoRA's current rank_pattern).</summary>
    public PeftConfig EffectiveConfig(string name) =>
        configs[name] is AdaLoraConfig ada && allocators.GetValueOrDefault(name)?.RankPattern is { } pattern ? ada with { RankPattern = pattern } : configs[name];

    /// <summary>The AdaLoRA allocator of a (trainable) AdaLoRA adapter.</summary>
    public RankAllocator? Allocator(string name = "default") => allocators.GetValueOrDefault(name);

    /// <summary>Loss terms the method adds (AdaLoRA: orth_reg_weight × orthogonal penalty); zero otherwise.</summary>
    public Tensor RegularizationLoss()
    {
        Tensor total = torch.tensor(0.0f);
        foreach (var name in active)
            if (configs[name] is AdaLoraConfig { InferenceMode: false } ada && ada.OrthRegWeight > 0)
                total = total + ada.OrthRegWeight * RankAllocator.OrthogonalPenalty(AdaptedLayers(name).Select(t => (AdaLoraAdapter)t.Adapter));
        return total;
    }

    /// <summary>AdaLoRA's per-step hook (after optimizer.step, before zero_grad); a no-op for other methods.</summary>
    public void UpdateAndAllocate(int globalStep)
    {
        foreach (var name in active)
            if (allocators.TryGetValue(name, out var allocator) && !configs[name].InferenceMode)
            {
                allocator.UpdateAndAllocate(globalStep);
                if (allocator.RankPattern != null)
                    configs[name] = ((AdaLoraConfig)configs[name]) with { RankPattern = allocator.RankPattern };
            }
    }
}
