using VlPeft.Peft;

namespace VlPeft.Models;

/// <summary>
/// A model family, registered by the config.json model_type values it reads (<see cref="ModelFamilies"/>):
/// it builds its composite from a config, loads its processor from a checkpoint directory, and names the
/// PEFT presets of the paper it serves.
/// </summary>
public abstract class ModelFamily
{
    /// <summary>The config.json model_type values this family builds.</summary>
    public abstract IReadOnlyList<string> ModelTypes { get; }

    /// <summary>Builds the composite a config.json text describes (weights initialised, not loaded).</summary>
    public abstract VisionLanguageModel Create(string configJson, string file, ModelBuildOptions? options = null);

    /// <summary>The processor for a model whose tokenizer and preprocessing files are in <paramref name="directory"/>.</summary>
    public abstract VisionLanguageProcessor LoadProcessor(VisionLanguageModel model, string directory);

    /// <summary>Checkpoint keys that are copies of another tensor (HF ties them; files may or may not hold them).</summary>
    public virtual IEnumerable<string> TiedAliases(VisionLanguageModel model) => Array.Empty<string>();

    /// <summary>The PEFT presets of this family's paper(s).</summary>
    public virtual IReadOnlyList<string> PeftPresetNames => Array.Empty<string>();

    /// <summary>The plan `params` counts when none is named: the paper's baseline for this model, or full.</summary>
    public virtual string DefaultPeftPreset(VisionLanguageModel model) => PeftPresetNames.FirstOrDefault() ?? TrainingPlan.Full.Name;

    public virtual TrainingPlan PeftPreset(string name, VisionLanguageModel model, int rank) =>
        throw new BadInputException($"unknown PEFT preset '{name}'" + (PeftPresetNames.Count > 0 ? $" (known: {string.Join(", ", PeftPresetNames)})" : $": the {ModelTypes[0]} family has none"));

    /// <summary>
    /// Builds a fresh model from a preset config with the given WordPiece vocabulary, writing its tokenizer
    /// files into <paramref name="folder"/> (pretraining the demo's tiny base).
    /// </summary>
    public virtual (VisionLanguageModel Model, VisionLanguageProcessor Processor) CreateFromScratch(string presetJson, IReadOnlyList<string> vocabulary, string folder) =>
        throw new BadInputException($"the {ModelTypes[0]} family cannot be built from scratch");
}
