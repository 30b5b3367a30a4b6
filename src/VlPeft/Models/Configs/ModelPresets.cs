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

    public static IReadOnlyList<string> Names { get; } = typeof(ModelPresets).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix)).Select(n => n[Prefix.Length..^".json".Length]).OrderBy(n => n).ToList();

    public static string Json(string name)
    {
        using var stream = typeof(ModelPresets).Assembly.GetManifestResourceStream(Prefix + name + ".json")
            ?? throw new BadInputException($"unknown model preset '{name}' (known: {string.Join(", ", Names)})");
        return new StreamReader(stream).ReadToEnd();
    }

    public static MultimodalConfig Get(string name) => MultimodalConfig.Parse(Json(name), $"preset {name}");
}
