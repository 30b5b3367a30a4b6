using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Peft;

/// <summary>
/// HF PEFT's adapter files: <c>adapter_config.json</c> (sorted keys, indent 2, inference_mode
/// true) and <c>adapter_model.safetensors</c> (metadata format=pt) with keys
/// <c>base_model.model.&lt;path&gt;.lora_A.weight</c> — the in-memory name without the adapter
/// name (site adapters: <c>base_model.model.&lt;site path&gt;.&lt;param&gt;</c>). Each method's tuner may
/// rename or transform its tensors (AdaLoRA slices by rank_pattern); buffers (ranknum) are never saved.
/// </summary>
public static class PeftFiles
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors", PickledWeightsFileName = "adapter_model.bin";
    public const string Prefix = "base_model.model.";

    /// <summary>Writes an adapter into <paramref name="directory"/> (a non-default name goes into a subfolder, as HF does).</summary>
    public static string Save(PeftModel model, string directory, string adapterName = "default")
    {
        var config = model.Configs.ContainsKey(adapterName) ? model.EffectiveConfig(adapterName) : throw new KeyNotFoundException($"no adapter named '{adapterName}'");
        string target = adapterName == "default" ? directory : Path.Combine(directory, adapterName);
        Directory.CreateDirectory(target);
        var tensors = SavedTensors(model, adapterName);
        using (var scope = torch.NewDisposeScope())
            SafetensorsWriter.Write(Path.Combine(target, WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var saved = config with { InferenceMode = true };
        AtomicFile.WriteAllText(Path.Combine(target, ConfigFileName), saved.ToJsonText());
        return target;
    }

    /// <summary>Every adapter of the model: "default" in <paramref name="directory"/>, the others in subfolders named after them (HF's layout).</summary>
    public static void SaveAll(PeftModel model, string directory)
    {
        foreach (var name in model.AdapterNames) Save(model, directory, name);
    }

    /// <summary>The saved key → tensor map (what <see cref="Save"/> writes).</summary>
    public static Dictionary<string, Tensor> SavedTensors(PeftModel model, string adapterName = "default")
    {
        var tuner = model.Tuner(adapterName);
        return KeyMap(model, adapterName).ToDictionary(kv => kv.Key, kv => tuner.SavedValue(kv.Key, kv.Value.detach()));
    }

    /// <summary>Saved key → live parameter, for one adapter (adapter tensors, biases per config, modules_to_save).</summary>
    public static Dictionary<string, TorchSharp.Modules.Parameter> KeyMap(PeftModel model, string adapterName)
    {
        var tuner = model.Tuner(adapterName);
        var map = new Dictionary<string, TorchSharp.Modules.Parameter>();
        foreach (var (name, parameter, trainable) in model.AdapterParameterEntries(adapterName))
            if (trainable) map[Prefix + tuner.SavedKey(WithoutAdapterName(name, adapterName))] = parameter;
        string bias = tuner.Config.BiasMode;
        var adapted = model.AdaptedLayers(adapterName).ToDictionary(t => t.Adapter.Layer, t => t.Path);
        if (bias == "all")
        {
            var adaptedPaths = adapted.Values.ToHashSet();
            foreach (var (name, p) in model.OrdinaryParameters().Where(t => t.Name.EndsWith(".bias", StringComparison.Ordinal)))
            {
                string owner = name[..^".bias".Length];
                map[Prefix + (adaptedPaths.Contains(owner) ? owner + ".base_layer.bias" : name)] = p;
            }
        }
        else if (bias == "lora_only")
            foreach (var (layer, path) in adapted)
                if (layer.bias is { } b) map[$"{Prefix}{path}.base_layer.bias"] = b;
        foreach (var (name, p) in model.FullyTrainedParameters(adapterName)) map[Prefix + name] = p;
        foreach (var (name, p) in model.InFullParameters()) map[Prefix + name] = p;
        return map;
    }

    /// <summary>
    /// An in-memory adapter tensor name without its adapter name: <c>…lora_E.default</c> → <c>…lora_E</c>,
    /// <c>…lora_A.default.weight</c> → <c>…lora_A.weight</c>, <c>site.default.down.weight</c> → <c>site.down.weight</c>.
    /// </summary>
    internal static string WithoutAdapterName(string inMemory, string adapterName)
    {
        var parts = inMemory.Split('.').ToList();
        int index = parts.LastIndexOf(adapterName);
        if (index < 0) throw new InvalidOperationException($"adapter tensor '{inMemory}' does not carry the adapter name '{adapterName}'");
        parts.RemoveAt(index);
        return string.Join('.', parts);
    }

    /// <summary>
    /// Reads an adapter saved by HF PEFT or VlPeft and attaches it to <paramref name="model"/> under
    /// <paramref name="adapterName"/>. Every adapter tensor must be present with the right shape;
    /// extra keys are reported as warnings. Without <paramref name="trainable"/> the adapter is
    /// loaded in inference mode, as HF's default.
    /// </summary>
    public static PeftModel Load(nn.Module model, string directory, string adapterName = "default", bool trainable = false)
    {
        var config = ReadConfig(directory) with { InferenceMode = !trainable };
        var peft = PeftModel.Create(model, config, adapterName);
        LoadWeights(peft, directory, adapterName);
        return peft;
    }

    /// <summary>
    /// Loads what <see cref="SaveAll"/> wrote: the adapter in <paramref name="directory"/> as "default" and every subfolder holding
    /// an adapter_config.json under its folder name, all active (a plan with several adapters, such as a LoRA + RepAdapter hybrid).
    /// </summary>
    public static PeftModel LoadAll(nn.Module model, string directory, bool trainable = false)
    {
        var peft = Load(model, directory, trainable: trainable);
        var more = Directory.GetDirectories(directory).Where(d => File.Exists(Path.Combine(d, ConfigFileName))).OrderBy(d => d, StringComparer.Ordinal).ToList();
        foreach (var sub in more) LoadAdapter(peft, sub, Path.GetFileName(sub), trainable);
        if (more.Count > 0) peft.SetAdapter(more.Select(Path.GetFileName).Prepend("default").ToArray()!);
        return peft;
    }

    /// <summary>Adds a saved adapter to an existing <see cref="PeftModel"/> (HF load_adapter); not active until SetAdapter.</summary>
    public static void LoadAdapter(PeftModel peft, string directory, string adapterName, bool trainable = false)
    {
        var config = ReadConfig(directory) with { InferenceMode = !trainable };
        peft.AddAdapter(adapterName, config);
        LoadWeights(peft, directory, adapterName);
    }

    /// <summary>The model's own parameters an adapter directory carries (trained in full, modules_to_save), by model name.</summary>
    public static IReadOnlyList<string> SavedBaseParameters(nn.Module model, string directory)
    {
        if (WeightsFile(directory) is not string path) return Array.Empty<string>();
        using var file = TensorCheckpoint.Open(path);
        var names = TargetMatcher.OrdinaryParameters(model).Select(p => p.Name).ToHashSet();
        return file.Entries.Select(t => t.Name).Where(n => n.StartsWith(Prefix, StringComparison.Ordinal))
            .Select(n => n[Prefix.Length..]).Where(names.Contains).ToList();
    }

    public static PeftConfig ReadConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path)) throw new BadInputException($"no {ConfigFileName} in the adapter directory", directory);
        return PeftConfig.Parse(File.ReadAllText(path), path);
    }

    /// <summary>adapter_model.safetensors, else adapter_model.bin (HF PEFT's safe_serialization=False; read without running code).</summary>
    static string? WeightsFile(string directory) =>
        new[] { WeightsFileName, PickledWeightsFileName }.Select(n => Path.Combine(directory, n)).FirstOrDefault(File.Exists);

    static void LoadWeights(PeftModel peft, string directory, string adapterName)
    {
        string path = WeightsFile(directory) ?? throw new BadInputException($"no {WeightsFileName} (or {PickledWeightsFileName}) in the adapter directory", directory);
        var expected = KeyMap(peft, adapterName);
        using var file = TensorCheckpoint.Open(path);
        var stored = file.Entries.Select(t => t.Name).ToList();
        var missing = expected.Keys.Where(k => !file.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new BadInputException($"adapter file lacks {missing.Count} tensor(s) the config implies, e.g. '{missing[0]}'", path);
        // Base parameters trained in full (query tokens, projection, a whole Q-Former) are saved under their
        // own names; restore any the model has, as HF PEFT does for modules_to_save.
        var baseParameters = peft.Model.named_parameters().ToDictionary(p => Prefix + p.name, p => p.parameter);
        foreach (var name in stored.Where(n => !expected.ContainsKey(n) && baseParameters.ContainsKey(n)))
            expected[name] = baseParameters[name];
        var unexpected = stored.Where(n => !expected.ContainsKey(n)).ToList();
        if (unexpected.Count > 0)
            Log.Warning($"{path}: {unexpected.Count} tensor(s) not used by this model, e.g. '{unexpected[0]}'");
        using var _ = torch.no_grad();
        foreach (var (key, parameter) in expected)
        {
            using var value = file.ReadTensor(key);
            if (!value.shape.SequenceEqual(parameter.shape))
                throw new BadInputException($"tensor '{key}' has shape [{string.Join(", ", value.shape)}] but the model expects [{string.Join(", ", parameter.shape)}]", path);
            if (value.is_floating_point() && !value.isfinite().all().item<bool>())
                throw new BadInputException($"tensor '{key}' holds NaN or infinite values: the adapter is broken", path);
            parameter.copy_(value);
        }
    }
}
