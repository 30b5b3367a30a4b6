using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Peft;

/// <summary>
/// The fields every HF PEFT method shares: what to target and what else to train. Subclasses add their
/// method's fields and build its tuner; <see cref="ToJson"/> writes HF PEFT's adapter_config.json.
/// </summary>
public abstract record PeftConfig
{
    /// <summary>"LORA", "ADALORA", "LOHA": upper case as HF PEFT writes it.</summary>
    public abstract string PeftType { get; }

    /// <summary>The tuner that attaches this config as the adapter <paramref name="adapterName"/>.</summary>
    public abstract PeftTuner CreateTuner(string adapterName);

    /// <summary>The config completed for a run of <paramref name="totalSteps"/> optimizer steps (AdaLoRA's total_step).</summary>
    public virtual PeftConfig ForTraining(int totalSteps) => this;

    /// <summary>Ranks per module that training learned and the config records (AdaLoRA's rank_pattern), or null.</summary>
    public virtual IReadOnlyDictionary<string, int>? LearnedRanks() => null;

    /// <summary>Why this config cannot join adapters already attached with <paramref name="existing"/>, or null.</summary>
    public virtual string? ConflictWith(IEnumerable<PeftConfig> existing) => null;

    public ModuleSelector? TargetModules { get; init; }
    public ModuleSelector? ExcludeModules { get; init; }
    /// <summary>Layer indices to adapt (list targets only), found with <see cref="LayersPattern"/>.</summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }
    public IReadOnlyList<string>? LayersPattern { get; init; }
    /// <summary>Modules trained in full besides the adapters (HF: trainable copies; saved under their own names).</summary>
    public IReadOnlyList<string>? ModulesToSave { get; init; }
    public string? TaskType { get; init; }
    public string? BaseModelNameOrPath { get; init; }
    public string? Revision { get; init; }
    public bool InferenceMode { get; init; }

    /// <summary>Which base biases train with the adapter: "none", "all" or "lora_only" (the LoRA family's <c>bias</c>).</summary>
    public virtual string BiasMode => "none";

    /// <summary>The adapter's init seed is the caller's business (torch.manual_seed); configs carry no RNG state.</summary>
    public virtual void Validate()
    {
        if (TargetModules is null) throw new BadInputException("target_modules must be given (VlPeft has no per-model default table)");
        if (LayersPattern != null && LayersToTransform == null)
            throw new BadInputException("layers_pattern requires layers_to_transform");
        if (LayersToTransform is { Count: > 0 } && TargetModules.Regex != null && !TargetModules.IsAllLinear)
            throw new BadInputException("layers_to_transform cannot be used when target_modules is a regex string (HF PEFT): list the module names instead");
        if (LayersPattern is { Count: > 0 } && TargetModules.Regex != null && !TargetModules.IsAllLinear)
            throw new BadInputException("layers_pattern cannot be used when target_modules is a regex string (HF PEFT)");
    }

    /// <summary>The config as HF PEFT writes it (keys sorted on output).</summary>
    public virtual JsonObject ToJson() => new()
    {
        ["peft_type"] = PeftType,
        ["task_type"] = TaskType,
        ["base_model_name_or_path"] = BaseModelNameOrPath,
        ["revision"] = Revision,
        ["inference_mode"] = InferenceMode,
        ["target_modules"] = TargetModules?.ToJson(),
        ["exclude_modules"] = ExcludeModules?.ToJson(),
        ["layers_to_transform"] = LayersToTransform == null ? null : new JsonArray(LayersToTransform.Select(i => (JsonNode)i).ToArray()),
        ["layers_pattern"] = LayersPattern == null ? null : new JsonArray(LayersPattern.Select(p => (JsonNode)p).ToArray()),
        ["modules_to_save"] = ModulesToSave == null ? null : new JsonArray(ModulesToSave.Select(m => (JsonNode)m).ToArray()),
    };

    /// <summary>Reads the shared fields into a record created by a subclass reader.</summary>
    protected static T WithCommon<T>(T config, ConfigJson json) where T : PeftConfig => config with
    {
        TargetModules = ModuleSelector.FromJson(json.Node("target_modules"), "target_modules"),
        ExcludeModules = ModuleSelector.FromJson(json.Node("exclude_modules"), "exclude_modules"),
        LayersToTransform = ReadInts(json.Node("layers_to_transform"), json.File),
        LayersPattern = ReadStrings(json.Node("layers_pattern")),
        ModulesToSave = json.Get<List<string>?>("modules_to_save", null),
        TaskType = json.Get<string?>("task_type", null),
        BaseModelNameOrPath = json.Get<string?>("base_model_name_or_path", null),
        Revision = json.Get<string?>("revision", null),
        InferenceMode = json.Get("inference_mode", false),
    };

    static IReadOnlyList<int>? ReadInts(JsonNode? node, string file) => node switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out int i) => new[] { i },
        JsonArray a => a.Select(x => x!.GetValue<int>()).ToArray(),
        _ => throw new BadInputException("layers_to_transform must be an int or a list of ints", file),
    };

    static IReadOnlyList<string>? ReadStrings(JsonNode? node) => node switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => new[] { s! },
        JsonArray a => a.Select(x => x!.GetValue<string>()).ToArray(),
        _ => null,
    };

    /// <summary>Parses an adapter_config.json text; unknown keys are reported through <see cref="Log"/>.</summary>
    public static PeftConfig Parse(string jsonText, string file)
    {
        var obj = JsonObjects.Parse(jsonText, file, "adapter config");
        var config = FromJson(obj, file, strict: false);
        try
        {
            config.Validate();
        }
        catch (BadInputException e) when (e.File == null)
        {
            throw new BadInputException(e.Message, file);
        }
        return config;
    }

    /// <summary>
    /// Reads a config object through the registered method of its peft_type, without validating it.
    /// Unknown keys are warnings (HF PEFT's behaviour for adapter files) or, when <paramref name="strict"/>, errors.
    /// </summary>
    public static PeftConfig FromJson(JsonObject obj, string file, bool strict)
    {
        var json = new ConfigJson(obj, file);
        string peftType = json.Get<string?>("peft_type", null) ?? throw new BadInputException("adapter config has no 'peft_type'", file);
        var config = PeftMethods.Read(peftType, json);
        if (strict) json.RejectTheRest();
        else json.WarnAboutTheRest();
        return config;
    }

    /// <summary>JSON text as HF PEFT writes it: sorted keys, indent 2.</summary>
    public string ToJsonText()
    {
        var sorted = new JsonObject();
        foreach (var (key, value) in ToJson().OrderBy(kv => kv.Key, StringComparer.Ordinal))
            sorted[key] = value?.DeepClone();
        return sorted.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 2 });
    }
}
