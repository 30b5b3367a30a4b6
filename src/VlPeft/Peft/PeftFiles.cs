using TorchSharp;
using VlPeft.Peft.AdaLora;
using VlPeft.Peft.Lora;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Peft;

/// <summary>
/// HF PEFT's adapter files: <c>adapter_config.json</c> (sorted keys, indent 2, inference_mode
/// true) and <c>adapter_model.safetensors</c> (metadata format=pt) with keys
/// <c>base_model.model.&lt;path&gt;.lora_A.weight</c> — the in-memory name without the adapter
/// name. AdaLoRA tensors are sliced by rank_pattern on save; ranknum is never saved.
/// </summary>
public static class PeftFiles
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";
    const string Prefix = "base_model.model.";

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

    /// <summary>The saved key → tensor map (what <see cref="Save"/> writes).</summary>
    public static Dictionary<string, Tensor> SavedTensors(PeftModel model, string adapterName = "default")
    {
        var config = model.EffectiveConfig(adapterName);
        var result = new Dictionary<string, Tensor>();
        var pattern = (config as AdaLoraConfig)?.RankPattern;
        foreach (var (key, parameter) in KeyMap(model, adapterName))
        {
            Tensor value = parameter.detach();
            if (pattern != null) value = SliceByRankPattern(key, value, pattern, ((AdaLoraConfig)config).InitR);
            result[key] = value;
        }
        return result;
    }

    /// <summary>Saved key → live parameter, for one adapter (adapter tensors, biases per config, modules_to_save).</summary>
    public static Dictionary<string, TorchSharp.Modules.Parameter> KeyMap(PeftModel model, string adapterName)
    {
        var config = model.Configs[adapterName];
        var map = new Dictionary<string, TorchSharp.Modules.Parameter>();
        foreach (var (name, parameter, _) in model.AdapterParameterEntries(adapterName))
        {
            var key = SavedKey(name, adapterName);
            if (key != null) map[key] = parameter;
        }
        string bias = config.BiasMode;
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

    /// <summary>In-memory adapter name → saved key (null for ranknum, which HF never saves).</summary>
    internal static string? SavedKey(string inMemory, string adapterName)
    {
        if (inMemory.Contains($".{AdaLoraAdapter.RankNumKind}.")) return null;
        string suffix = "." + adapterName;
        string key = inMemory.EndsWith(suffix, StringComparison.Ordinal)
            ? inMemory[..^suffix.Length]                             // parameter entry: …lora_E.default → …lora_E
            : RemoveSecondToLast(inMemory, adapterName);             // module entry: …lora_A.default.weight → …lora_A.weight
        if (key.EndsWith($".{DoraAdapter.MagnitudeKind}.weight", StringComparison.Ordinal))
            key = key[..^".weight".Length];                           // DoRA saves the magnitude without .weight
        return Prefix + key;
    }

    static string RemoveSecondToLast(string name, string adapterName)
    {
        var parts = name.Split('.');
        if (parts.Length < 2 || parts[^2] != adapterName)
            throw new InvalidOperationException($"adapter tensor '{name}' does not carry the adapter name '{adapterName}'");
        return string.Join('.', parts[..^2].Append(parts[^1]));
    }

    static Tensor SliceByRankPattern(string key, Tensor value, IReadOnlyDictionary<string, bool[]> pattern, int initR)
    {
        bool isA = key.EndsWith(".lora_A"), isE = key.EndsWith(".lora_E"), isB = key.EndsWith(".lora_B");
        if (!isA && !isE && !isB) return value;
        string module = key[Prefix.Length..key.LastIndexOf('.')];
        if (!pattern.TryGetValue(module + ".lora_E", out var keep)) return value;
        long currentRank = isB ? value.shape[1] : value.shape[0];
        if (currentRank != initR) return value; // already stored at its pruned size
        var index = torch.tensor(Enumerable.Range(0, keep.Length).Where(i => keep[i]).Select(i => (long)i).ToArray());
        return value.index_select(isB ? 1 : 0, index);
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

    /// <summary>Adds a saved adapter to an existing <see cref="PeftModel"/> (HF load_adapter); not active until SetAdapter.</summary>
    public static void LoadAdapter(PeftModel peft, string directory, string adapterName, bool trainable = false)
    {
        var config = ReadConfig(directory) with { InferenceMode = !trainable };
        peft.AddAdapter(adapterName, config);
        LoadWeights(peft, directory, adapterName);
    }

    public static PeftConfig ReadConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path)) throw new BadInputException($"no {ConfigFileName} in the adapter directory", directory);
        return PeftConfig.Parse(File.ReadAllText(path), path);
    }

    static void LoadWeights(PeftModel peft, string directory, string adapterName)
    {
        string path = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(path))
            throw new BadInputException(File.Exists(Path.Combine(directory, "adapter_model.bin"))
                ? "adapter_model.bin (pickle) is not supported; save the adapter with safe_serialization=True"
                : $"no {WeightsFileName} in the adapter directory", directory);
        var expected = KeyMap(peft, adapterName);
        using var file = SafetensorsFile.Open(path);
        var missing = expected.Keys.Where(k => !file.Header.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new BadInputException($"adapter file lacks {missing.Count} tensor(s) the config implies, e.g. '{missing[0]}'", path);
        // Base parameters trained in full (query tokens, projection, a whole Q-Former) are saved under their
        // own names; restore any the model has, as HF PEFT does for modules_to_save.
        var baseParameters = peft.Model.named_parameters().ToDictionary(p => Prefix + p.name, p => p.parameter);
        foreach (var name in file.Header.Tensors.Select(t => t.Name).Where(n => !expected.ContainsKey(n) && baseParameters.ContainsKey(n)))
            expected[name] = baseParameters[name];
        var unexpected = file.Header.Tensors.Select(t => t.Name).Where(n => !expected.ContainsKey(n)).ToList();
        if (unexpected.Count > 0)
            Log.Warning($"{path}: {unexpected.Count} tensor(s) not used by this model, e.g. '{unexpected[0]}'");
        using var _ = torch.no_grad();
        foreach (var (key, parameter) in expected)
        {
            using var value = file.ReadTensor(key);
            if (!value.shape.SequenceEqual(parameter.shape))
                throw new BadInputException($"tensor '{key}' has shape [{string.Join(", ", value.shape)}] but the model expects [{string.Join(", ", parameter.shape)}]", path);
            parameter.copy_(value);
        }
    }
}
