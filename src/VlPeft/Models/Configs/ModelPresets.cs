using System.Reflection;

namespace VlPeft.Models.Configs;

/// <summary>
/// Embedded config.json files: the four paper checkpoints with their HF config values
/// (Salesforce/blip2-opt-2.7b, blip2-flan-t5-xl, instructblip-flan-t5-xl, instructblip-vicuna-7b)
/// and tiny variants of the same architectures for tests and the demo.
/// </summary>
public static class ModelPresets
{
    const string Prefix = "VlPeft.Presets.";

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> registered = new();

    static readonly IReadOnlyList<string> embedded = typeof(ModelPresets).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix)).Select(n => n[Prefix.Length..^".json".Length]).ToList();

    /// <summary>Embedded presets and those other families registered.</summary>
    public static IReadOnlyList<string> Names => embedded.Concat(registered.Keys).Distinct().OrderBy(n => n, StringComparer.Ordinal).ToList();

    /// <summary>Adds a family's preset (a config.json text with its model_type), usable by name everywhere presets are.</summary>
    public static void Register(string name, string configJson) => registered[name] = configJson;

    public static string Json(string name)
    {
        if (registered.TryGetValue(name, out var json)) return json;
        using var stream = typeof(ModelPresets).Assembly.GetManifestResourceStream(Prefix + name + ".json")
            ?? throw new BadInputException($"unknown model preset '{name}' (known: {string.Join(", ", Names)})");
        return new StreamReader(stream).ReadToEnd();
    }

    /// <summary>An InstructBLIP / BLIP-2 preset's typed config.</summary>
    public static MultimodalConfig Get(string name) => MultimodalConfig.Parse(Json(name), $"preset {name}");
}
