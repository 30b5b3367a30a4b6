using VlPeft.Models.Configs;
using VlPeft.Peft;
using VlPeft.Text.Tokenizers;

namespace VlPeft.Models.Multimodal;

/// <summary>The LaVIN-style model of the Bottleneck Adapter paper (model_type lavin), with its PEFT presets.</summary>
public sealed class LavinFamily : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = new[] { LavinConfig.Type };

    public override VisionLanguageModel Create(string configJson, string file, ModelBuildOptions? options = null) =>
        new LavinForConditionalGeneration(LavinConfig.Parse(configJson, file), options);

    public override VisionLanguageProcessor LoadProcessor(VisionLanguageModel model, string directory) =>
        new LavinProcessor(TextTokenizer.FromDirectory(directory), Lavin(model).Config);

    public override IReadOnlyList<string> PeftPresetNames => LavinPeftPresets.Names;

    public override TrainingPlan PeftPreset(string name, VisionLanguageModel model, int rank) => LavinPeftPresets.Get(name, Lavin(model).Config, rank);

    /// <summary>A fresh model with this WordPiece vocabulary (the demo's tiny base): [CLS] is BOS, [SEP] EOS, [MASK] the image placeholder.</summary>
    public override (VisionLanguageModel Model, VisionLanguageProcessor Processor) CreateFromScratch(string presetJson, IReadOnlyList<string> vocab, string folder)
    {
        Directory.CreateDirectory(folder);
        WordPieceVocabulary.Write(Path.Combine(folder, "vocab.txt"), vocab);
        var preset = LavinConfig.Parse(presetJson, "preset");
        var config = preset with { Text = preset.Text with { VocabSize = vocab.Count, PadTokenId = 0, BosTokenId = 2, EosTokenId = 3 }, ImageTokenIndex = 4 };
        var model = new LavinForConditionalGeneration(config);
        return (model, LoadProcessor(model, folder));
    }

    static LavinForConditionalGeneration Lavin(VisionLanguageModel model) =>
        model as LavinForConditionalGeneration ?? throw new ArgumentException($"not a LaVIN model: {model.GetType().Name}");
}
