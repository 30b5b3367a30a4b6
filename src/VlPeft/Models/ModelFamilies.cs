using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;

namespace VlPeft.Models;

/// <summary>
/// The registry of model families by config.json model_type. BLIP-2, InstructBLIP, the LaVIN-style model and the routing paper's ViT + RoBERTa / ViT + GPT-2 pipelines are built in;
/// other families (and test families) register themselves with <see cref="Register"/>.
/// </summary>
public static class ModelFamilies
{
    static readonly ConcurrentDictionary<string, ModelFamily> byType = new();

    static ModelFamilies()
    {
        Register(new BlipFamily());
        Register(new LavinFamily());
        Register(new RoutingFamily());
    }

    public static void Register(ModelFamily family)
    {
        foreach (var type in family.ModelTypes) byType[type] = family;
    }

    public static IReadOnlyCollection<string> ModelTypes => byType.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();

    public static ModelFamily ForType(string modelType, string? file = null) =>
        byType.TryGetValue(modelType, out var family) ? family
            : throw new BadInputException($"model_type '{modelType}' is not supported (registered: {string.Join(", ", ModelTypes)})", file);

    /// <summary>The family of a model built by any registered family.</summary>
    public static ModelFamily Of(VisionLanguageModel model) => ForType(model.ModelType);

    /// <summary>The model_type of a config.json text.</summary>
    public static string ModelTypeOf(string configJson, string file)
    {
        var root = JsonObjects.Parse(configJson, file, "config.json");
        return root["model_type"] is JsonValue v && v.TryGetValue(out string? type) ? type! : throw new BadInputException("config.json has no model_type", file);
    }

    /// <summary>Builds the model a config.json text describes, through its family.</summary>
    public static VisionLanguageModel Create(string configJson, string file, ModelBuildOptions? options = null) =>
        ForType(ModelTypeOf(configJson, file), file).Create(configJson, file, options);

    /// <summary>Builds the model of a config.json file or of a directory holding one.</summary>
    public static VisionLanguageModel FromConfigFile(string path, ModelBuildOptions? options = null)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new BadInputException("config.json not found", file);
        return Create(File.ReadAllText(file), file, options);
    }

    /// <summary>Builds a named preset (an embedded or registered config.json).</summary>
    public static VisionLanguageModel FromPreset(string name, ModelBuildOptions? options = null) =>
        Create(ModelPresets.Json(name), $"preset {name}", options);
}
