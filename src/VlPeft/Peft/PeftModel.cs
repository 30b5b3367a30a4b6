using TorchSharp;
using VlPeft.Models;
using VlPeft.Nn;
using static TorchSharp.torch;

namespace VlPeft.Peft;

/// <summary>
/// Named adapters attached to a model (HF PEFT's PeftModel + the shared injection logic of its tuners):
/// attach by config, choose the active adapters, freeze everything else, merge/unmerge/unload. What is
/// particular to a method lives in its <see cref="PeftTuner"/>, whose hooks this class calls. Targets are
/// linear layers (delta adapters) or adapter sites (module adapters). The model itself is untouched apart
/// from the attached adapters, so parameter paths stay the HF names (see <see cref="PeftFiles"/>).
/// </summary>
public sealed class PeftModel
{
    readonly Dictionary<string, PeftTuner> tuners = new();
    readonly Dictionary<string, List<AttachedTarget>> attached = new();
    readonly Dictionary<string, ModulesToSave> fullyTrained = new();
    readonly List<string> trainedInFull = new();
    List<string> active = new();

    PeftModel(nn.Module model) => Model = model;

    public nn.Module Model { get; }
    /// <summary>The adapters' configs, with what training has learned (AdaLoRA's rank_pattern), as HF's peft_config.</summary>
    public IReadOnlyDictionary<string, PeftConfig> Configs => tuners.ToDictionary(t => t.Key, t => t.Value.EffectiveConfig);
    public IReadOnlyList<string> AdapterNames => tuners.Keys.ToList();
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

    /// <summary>
    /// Attaches another named adapter; like HF, it is neither active nor trainable until <see cref="SetAdapter"/>.
    /// Adapters of different methods may share a model (HF's mixed models), e.g. LoRA in the LLM beside a RepAdapter in the ViT.
    /// </summary>
    public void AddAdapter(string name, PeftConfig config)
    {
        if (tuners.ContainsKey(name)) throw new InvalidOperationException($"adapter '{name}' is already attached");
        config.Validate();
        if (config.ConflictWith(tuners.Values.Select(t => t.Config)) is string conflict) throw new InvalidOperationException(conflict);

        var tuner = config.CreateTuner(name);
        var list = tuner.TargetKind == TargetKind.Linear ? AttachToLayers(tuner) : AttachToSites(tuner);
        tuners[name] = tuner;
        attached[name] = list;
        tuner.OnAttached(list);
        if (config.ModulesToSave is { Count: > 0 } save)
        {
            // Each adapter's copy starts from the base module, not from another adapter's trained values.
            foreach (var existing in fullyTrained.Values) existing.Select(false);
            fullyTrained[name] = new ModulesToSave(Model, save);
            SelectModulesToSave();
        }
        UpdateTrainable();
    }

    List<AttachedTarget> AttachToLayers(PeftTuner tuner)
    {
        var list = new List<AttachedTarget>();
        foreach (var (path, layer) in TargetMatcher.FindTargets(Model, tuner.Config))
        {
            var adapter = tuner.CreateLinearAdapter(path, layer);
            BindContext(adapter, path);
            layer.Attach(adapter);
            layer.SetActiveAdapters(active);
            list.Add(new AttachedTarget(path, adapter, null, null));
        }
        return list;
    }

    List<AttachedTarget> AttachToSites(PeftTuner tuner)
    {
        var list = new List<AttachedTarget>();
        foreach (var (path, site) in TargetMatcher.FindSites(Model, tuner.Config))
        {
            var adapter = tuner.CreateSiteAdapter(path, site, site.Width);
            BindContext(adapter, path);
            site.Attach(tuner.AdapterName, adapter);
            site.SetActive(active);
            list.Add(new AttachedTarget(path, null, site, adapter));
        }
        return list;
    }

    /// <summary>Hands adapters that read a per-forward tensor the model's context, if the model publishes it.</summary>
    void BindContext(object adapter, string path)
    {
        if (adapter is not IForwardContextConsumer consumer) return;
        var published = (Model as VisionLanguageModel)?.PublishedContext ?? Array.Empty<string>();
        foreach (var need in consumer.ContextNeeds)
            if (!published.Contains(need))
                throw new BadInputException($"the adapter at '{path}' needs '{need}' from the model's forward, which this model does not publish");
        if (Model is VisionLanguageModel model) consumer.Bind(model.Context);
    }

    /// <summary>The linear layers an adapter is attached to, with their paths (empty for site adapters).</summary>
    public IReadOnlyList<(string Path, LinearAdapter Adapter)> AdaptedLayers(string name = "default") =>
        Targets(name).Where(t => t.LinearAdapter != null).Select(t => (t.Path, t.LinearAdapter!)).ToList();

    /// <summary>Every target of an adapter (layers or sites).</summary>
    public IReadOnlyList<AttachedTarget> Targets(string name = "default") =>
        attached.TryGetValue(name, out var list) ? list : throw new KeyNotFoundException($"no adapter named '{name}'");

    /// <summary>The tuner of an attached adapter (its method-specific state and hooks).</summary>
    public PeftTuner Tuner(string name = "default") =>
        tuners.TryGetValue(name, out var tuner) ? tuner : throw new KeyNotFoundException($"no adapter named '{name}'");

    /// <summary>Makes exactly these adapters active and (unless inference-mode) trainable.</summary>
    public void SetAdapter(params string[] names)
    {
        foreach (var n in names)
            if (!tuners.ContainsKey(n)) throw new KeyNotFoundException($"no adapter named '{n}'");
        active = names.ToList();
        foreach (var layer in AllLayers()) layer.SetActiveAdapters(active);
        foreach (var site in AllSites()) site.SetActive(active);
        SelectModulesToSave();
        UpdateTrainable();
    }

    /// <summary>Inactive adapters' trained copies go aside before active ones come in (two may share a module).</summary>
    void SelectModulesToSave()
    {
        foreach (var (name, save) in fullyTrained.Where(f => !active.Contains(f.Key))) save.Select(false);
        if (!AdaptersDisabled)
            foreach (var (name, save) in fullyTrained.Where(f => active.Contains(f.Key))) save.Select(true);
    }

    IEnumerable<Linear> AllLayers() => attached.Values.SelectMany(l => l).Where(t => t.LinearAdapter != null).Select(t => t.LinearAdapter!.Layer).Distinct();
    IEnumerable<AdapterSite> AllSites() => attached.Values.SelectMany(l => l).Where(t => t.Site != null).Select(t => t.Site!).Distinct();

    /// <summary>HF disable_adapter_layers / enable_adapter_layers (merged adapters are unmerged on the next forward).</summary>
    public void DisableAdapters()
    {
        if (AdaptersDisabled) return;
        foreach (var layer in AllLayers()) layer.EnableAdapters(false);
        foreach (var site in AllSites()) site.Disabled = true;
        foreach (var save in fullyTrained.Values) save.UseOriginal();
        AdaptersDisabled = true;
    }

    public void EnableAdapters()
    {
        if (!AdaptersDisabled) return;
        foreach (var layer in AllLayers()) layer.EnableAdapters(true);
        foreach (var site in AllSites()) site.Disabled = false;
        AdaptersDisabled = false;
        SelectModulesToSave();
    }

    /// <summary>
    /// Freezes every parameter, then unfreezes the active adapters' tensors (not inference-mode ones,
    /// not buffers such as AdaLoRA's ranknum), biases per the config's <c>bias</c>, and modules_to_save.
    /// </summary>
    void UpdateTrainable()
    {
        foreach (var (_, p) in Model.named_parameters()) p.requires_grad = false;
        foreach (var name in active)
        {
            var config = tuners[name].Config;
            if (config.InferenceMode) continue;
            foreach (var (_, p, _) in AdapterParameterEntries(name).Where(t => t.Trainable)) p.requires_grad = true;
            string bias = config.BiasMode;
            if (bias == "all")
                foreach (var (n, p) in OrdinaryParameters().Where(t => t.Name.EndsWith(".bias", StringComparison.Ordinal) || t.Name == "bias"))
                    p.requires_grad = true;
            if (bias == "lora_only")
                foreach (var (_, adapter) in AdaptedLayers(name))
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
        OrdinaryParameters().Where(p => trainedInFull.Any(prefix => prefix == TrainingPlan.Everything || p.Name == prefix || p.Name.StartsWith(prefix + ".", StringComparison.Ordinal)));

    /// <summary>Parameters of the model that are not adapter tensors (the base model's own).</summary>
    public IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> OrdinaryParameters() => TargetMatcher.OrdinaryParameters(Model);

    /// <summary>
    /// An adapter's tensors with their in-memory names (<c>path.lora_A.default.weight</c>,
    /// <c>path.lora_E.default</c>, <c>site.default.down.weight</c>) and whether they are trained (buffers are not).
    /// </summary>
    public IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter, bool Trainable)> AdapterParameterEntries(string name)
    {
        var tuner = Tuner(name);
        foreach (var target in Targets(name))
        {
            if (target.SiteAdapter is { } module)
            {
                foreach (var (pn, p) in module.named_parameters())
                    yield return ($"{target.Path}.{name}.{pn}", p, true);
                continue;
            }
            var adapter = target.LinearAdapter!;
            foreach (var kind in adapter.ContainerKinds)
            {
                var container = adapter.Layer.Container(kind);
                bool trainable = !tuner.IsBufferKind(kind);
                if (container.Module(name) is { } inner)
                    foreach (var (pn, p) in inner.named_parameters())
                        yield return ($"{target.Path}.{kind}.{name}.{pn}", p, trainable);
                else
                    yield return ($"{target.Path}.{kind}.{name}", container.Parameter(name), trainable);
            }
        }
    }

    /// <summary>The modules_to_save parameters of an adapter (trained in full, saved under their own names).</summary>
    public IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> FullyTrainedParameters(string name) =>
        fullyTrained.TryGetValue(name, out var save) ? save.Parameters : Array.Empty<(string, TorchSharp.Modules.Parameter)>();

    /// <summary>Parameters an optimizer should see: those that require grad.</summary>
    public IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> TrainableParameters() =>
        Model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter));

    /// <summary>Folds adapters into the base weights; refused, naming the reason, for methods that cannot merge.</summary>
    public void Merge(bool safe = false, IEnumerable<string>? names = null)
    {
        var wanted = (names ?? active).ToList();
        foreach (var name in wanted)
            if (Tuner(name).MergeRefusal is string why) throw new BadInputException($"adapter '{name}' cannot be merged: {why}");
        foreach (var name in wanted)
        {
            foreach (var (_, adapter) in AdaptedLayers(name))
                adapter.Layer.Merge(new[] { name }, safe);
            var sites = Targets(name).Where(t => t.Site != null).ToList();
            foreach (var target in sites) Tuner(name).MergeSite(target, safe);
            if (sites.Count > 0) (Model as VisionLanguageModel)?.AfterAdaptersFolded();
        }
    }

    /// <summary>Unmerges delta adapters; site adapters folded into their next layers cannot be unfolded (reload the base).</summary>
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
        foreach (var (name, list) in attached)
            foreach (var target in list.Where(t => t.Site != null)) target.Site!.Detach(name);
        attached.Clear();
        tuners.Clear();
        fullyTrained.Clear();
        active.Clear();
        return Model;
    }

    public void DeleteAdapter(string name)
    {
        foreach (var target in Targets(name))
        {
            target.LinearAdapter?.Layer.Detach(name);
            target.Site?.Detach(name);
        }
        attached.Remove(name);
        tuners.Remove(name);
        if (fullyTrained.Remove(name, out var save)) save.UseOriginal();
        active.Remove(name);
        UpdateTrainable();
    }

    /// <summary>An adapter's config including what training has learned (AdaLoRA's current rank_pattern).</summary>
    public PeftConfig EffectiveConfig(string name) => Tuner(name).EffectiveConfig;

    /// <summary>The sum of the active trainable adapters' extra loss terms (AdaLoRA's orthogonal penalty); zero if none.</summary>
    public Tensor ExtraLoss()
    {
        Tensor total = torch.tensor(0.0f);
        foreach (var name in active)
            if (tuners[name].ExtraLoss() is Tensor term) total = total + term;
        return total;
    }

    /// <summary>The per-step hook of the active adapters, after optimizer.step() and before zero_grad().</summary>
    public void AfterOptimizerStep(int globalStep)
    {
        foreach (var name in active) tuners[name].AfterOptimizerStep(globalStep);
    }

    /// <summary>The tuners' training state by adapter name, for checkpoints.</summary>
    public IReadOnlyDictionary<string, TunerState> ExportTrainingState() =>
        tuners.Select(t => (t.Key, State: t.Value.ExportState())).Where(t => t.State != null).ToDictionary(t => t.Key, t => t.State!);

    public void ImportTrainingState(IReadOnlyDictionary<string, TunerState> states)
    {
        foreach (var (name, state) in states) Tuner(name).ImportState(state);
    }
}
