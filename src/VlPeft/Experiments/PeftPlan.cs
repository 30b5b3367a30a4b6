using System.Globalization;
using System.Text.Json.Nodes;
using VlPeft.Models;
using VlPeft.Peft;

namespace VlPeft.Experiments;

/// <summary>
/// Turns an experiment file's <c>peft:</c> section into a <see cref="TrainingPlan"/>: a PEFT preset of the
/// model's family (or <c>full</c>), the adapter_config.json keys of any registered method overriding it (a
/// different <c>peft_type</c> keeps only the preset's targets; keys apply to the preset's default adapter, not to its others),
/// and <c>train_in_full:</c>. Unknown keys are errors.
/// </summary>
public static class PeftPlan
{
    public const string PresetKey = "preset", TrainInFullKey = "train_in_full";

    /// <summary>Keys every method shares: what a preset contributes when the override changes the method.</summary>
    static readonly string[] TargetKeys = { "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save" };

    /// <param name="totalSteps">Optimizer steps of the run (methods that need it, such as AdaLoRA, take it from here).</param>
    public static TrainingPlan Resolve(IReadOnlyDictionary<string, object?> section, VisionLanguageModel model, int totalSteps, string source)
    {
        var overrides = new JsonObject();
        foreach (var (key, value) in section.Where(kv => kv.Key is not (PresetKey or TrainInFullKey)))
            overrides[key] = ToJson(value);
        string? preset = section.GetValueOrDefault(PresetKey)?.ToString();
        var trainInFull = section.GetValueOrDefault(TrainInFullKey) switch
        {
            null => null,
            IEnumerable<object> list => list.Select(o => o?.ToString() ?? "").ToList(),
            var other => throw new BadInputException($"peft: train_in_full must be a list of module paths, not '{other}'", source),
        };
        if (preset is null && overrides.Count == 0)
            throw new BadInputException("peft: needs a preset (e.g. qformer-lora-all, full) or the adapter_config keys of a method (peft_type, target_modules, …)", source);

        TrainingPlan? basePlan = null;
        if (preset == TrainingPlan.Full.Name) basePlan = TrainingPlan.Full;
        else if (preset is not null)
        {
            // YAML numbers arrive as long (ToJson): read r as one, or a preset whose α follows r would see the default rank.
            int rank = overrides["r"] is JsonValue r && r.TryGetValue(out long value) && value is > 0 and <= int.MaxValue ? (int)value : 8;
            try
            {
                basePlan = ModelFamilies.Of(model).PeftPreset(preset, model, rank);
            }
            catch (BadInputException e) when (e.File is null)
            {
                throw new BadInputException($"peft: {e.Message}", source);
            }
        }
        var inFull = trainInFull ?? basePlan?.TrainInFull ?? Array.Empty<string>();
        if (overrides.Count == 0) return basePlan! with { TrainInFull = inFull };
        if (basePlan is { Peft: null } && overrides["peft_type"] is null)
            throw new BadInputException($"peft: preset '{preset}' attaches no adapter, so it takes no adapter keys (got '{overrides.First().Key}')", source);

        var json = basePlan?.Peft?.ToJson() ?? new JsonObject();
        string? baseType = json["peft_type"]?.GetValue<string>();
        if (overrides["peft_type"] is JsonValue t && !string.Equals(t.GetValue<string>(), baseType, StringComparison.OrdinalIgnoreCase))
            json = new JsonObject(json.Where(kv => TargetKeys.Contains(kv.Key)).Select(kv => KeyValuePair.Create(kv.Key, kv.Value?.DeepClone())));
        foreach (var (key, value) in overrides) json[key] = value?.DeepClone();
        var config = PeftConfig.FromJson(json, source, strict: true).ForTraining(totalSteps);
        return new TrainingPlan(preset ?? config.PeftType.ToLowerInvariant(), config, inFull) { MoreAdapters = basePlan?.MoreAdapters ?? Array.Empty<(string, PeftConfig)>() };
    }

    /// <summary>YAML scalars arrive as strings: numbers, booleans and null become JSON values of their kind.</summary>
    static JsonNode? ToJson(object? value) => value switch
    {
        null => null,
        string s when s is "null" or "~" => null,
        string s when bool.TryParse(s, out bool b) => JsonValue.Create(b),
        string s when long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long l) => JsonValue.Create(l),
        string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => JsonValue.Create(d),
        string s => JsonValue.Create(s),
        int i => JsonValue.Create(i),
        long l => JsonValue.Create(l),
        double d => JsonValue.Create(d),
        bool b => JsonValue.Create(b),
        IDictionary<object, object> map => new JsonObject(map.Select(kv => KeyValuePair.Create(kv.Key.ToString()!, ToJson(kv.Value)))),
        IDictionary<string, object?> map => new JsonObject(map.Select(kv => KeyValuePair.Create(kv.Key, ToJson(kv.Value)))),
        IEnumerable<object> list => new JsonArray(list.Select(ToJson).ToArray()),
        var other => JsonValue.Create(other.ToString()),
    };
}
