using TorchSharp;
using VlPeft.Imaging;
using VlPeft.Models.Configs;
using VlPeft.Peft;
using VlPeft.Text.Tokenizers;

namespace VlPeft.Models.Multimodal;

/// <summary>BLIP-2 and InstructBLIP (model_type blip-2, instructblip), with the Q-Former PEFT paper's presets.</summary>
public sealed class BlipFamily : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = new[] { "instructblip", "blip-2" };

    public override VisionLanguageModel Create(string configJson, string file, ModelBuildOptions? options = null) =>
        new BlipForConditionalGeneration(MultimodalConfig.Parse(configJson, file), options);

    /// <summary>The LM tokenizer from the directory; InstructBLIP's Q-Former tokenizer from qformer_tokenizer/ (else the LM's).</summary>
    public override VisionLanguageProcessor LoadProcessor(VisionLanguageModel model, string directory)
    {
        var config = Blip(model).Config;
        var lm = TextTokenizer.FromDirectory(directory);
        string qPath = Path.Combine(directory, "qformer_tokenizer");
        var qformer = Directory.Exists(qPath) ? TextTokenizer.FromDirectory(qPath) : lm;
        var images = new ImagePipeline(config.Vision.ImageSize, ImageNormalization.Clip);
        return new BlipProcessor(lm, config.IsInstructBlip ? qformer : null, images, config.DecoderOnly);
    }

    public override IEnumerable<string> TiedAliases(VisionLanguageModel model) => Blip(model).Config.Text.ModelType switch
    {
        "t5" => new[] { "language_model.encoder.embed_tokens.weight", "language_model.decoder.embed_tokens.weight" },
        "opt" => new[] { "language_model.lm_head.weight" },
        _ => Array.Empty<string>(),
    };

    public override IReadOnlyList<string> PeftPresetNames => BlipPeftPresets.Names;

    public override TrainingPlan PeftPreset(string name, VisionLanguageModel model, int rank) => BlipPeftPresets.Get(name, Blip(model).Config, rank);

    /// <summary>A fresh model with this WordPiece vocabulary for the LM and the Q-Former (plus [DEC]).</summary>
    public override (VisionLanguageModel Model, VisionLanguageProcessor Processor) CreateFromScratch(string presetJson, IReadOnlyList<string> vocab, string folder)
    {
        Directory.CreateDirectory(Path.Combine(folder, "qformer_tokenizer"));
        WordPieceVocabulary.Write(Path.Combine(folder, "vocab.txt"), vocab);
        WordPieceVocabulary.Write(Path.Combine(folder, "qformer_tokenizer", "vocab.txt"), vocab);
        File.WriteAllText(Path.Combine(folder, "qformer_tokenizer", "added_tokens.json"), $"{{\"[DEC]\": {vocab.Count}}}");
        File.WriteAllText(Path.Combine(folder, "qformer_tokenizer", "tokenizer_config.json"), "{\"truncation_side\": \"left\"}");
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), "{\"truncation_side\": \"left\"}");
        var preset = MultimodalConfig.Parse(presetJson, "preset");
        var config = preset with
        {
            QFormer = preset.QFormer with { VocabSize = vocab.Count + 1 },
            Text = preset.Text with { VocabSize = vocab.Count, EosTokenId = 3, PadTokenId = 0, DecoderStartTokenId = 0 },
        };
        var model = new BlipForConditionalGeneration(config);
        return (model, LoadProcessor(model, folder));
    }

    static BlipForConditionalGeneration Blip(VisionLanguageModel model) =>
        model as BlipForConditionalGeneration ?? throw new ArgumentException($"not a BLIP model: {model.GetType().Name}");
}
