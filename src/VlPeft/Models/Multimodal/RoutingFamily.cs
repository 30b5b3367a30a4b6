using System.Text.Json.Nodes;
using VlPeft.Models.Configs;
using VlPeft.Peft;
using VlPeft.Text.Tokenizers;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// The routing paper's two pipelines: ViT + RoBERTa VQA classifier (model_type vit_roberta_vqa) and ViT + GPT-2
/// captioner (vit_gpt2_captioning), with their PEFT presets.
/// </summary>
public sealed class RoutingFamily : ModelFamily
{
    public override IReadOnlyList<string> ModelTypes { get; } = new[] { VitRobertaVqaConfig.Type, VitGpt2CaptioningConfig.Type };

    public override VisionLanguageModel Create(string configJson, string file, ModelBuildOptions? options = null) =>
        ModelFamilies.ModelTypeOf(configJson, file) == VitRobertaVqaConfig.Type
            ? new VitRobertaForVqa(VitRobertaVqaConfig.Parse(configJson, file), options)
            : new VitGpt2ForCaptioning(VitGpt2CaptioningConfig.Parse(configJson, file), options);

    public override VisionLanguageProcessor LoadProcessor(VisionLanguageModel model, string directory) => model switch
    {
        VitRobertaForVqa vqa => new VqaClassifierProcessor(TextTokenizer.FromDirectory(directory), vqa.Config, VitImageProcessor.Load(directory, vqa.Config.Vision.ImageSize)),
        VitGpt2ForCaptioning captioner => new CaptioningProcessor(TextTokenizer.FromDirectory(directory), captioner.Config, VitImageProcessor.Load(directory, captioner.Config.Vision.ImageSize)),
        _ => throw new ArgumentException($"not a routing-paper model: {model.GetType().Name}"),
    };

    /// <summary>GPT2LMHeadModel files may hold lm_head.weight, a copy of wte.</summary>
    public override IEnumerable<string> TiedAliases(VisionLanguageModel model) =>
        model is VitGpt2ForCaptioning ? new[] { "lm_head.weight" } : Array.Empty<string>();

    public override IReadOnlyList<string> PeftPresetNames => RoutingPeftPresets.RobertaNames.Concat(RoutingPeftPresets.Gpt2Names).ToList();

    public override string DefaultPeftPreset(VisionLanguageModel model) =>
        model is VitGpt2ForCaptioning ? RoutingPeftPresets.Gpt2Names[0] : RoutingPeftPresets.RobertaNames[0];

    public override TrainingPlan PeftPreset(string name, VisionLanguageModel model, int rank) => model switch
    {
        VitRobertaForVqa => RoutingPeftPresets.Roberta(name, rank),
        VitGpt2ForCaptioning captioner => RoutingPeftPresets.Gpt2(name, rank, captioner.Config.Text.NLayer),
        _ => throw new ArgumentException($"not a routing-paper model: {model.GetType().Name}"),
    };

    /// <summary>
    /// A fresh model with this WordPiece vocabulary (the demo's tiny bases): [PAD] 0 is RoBERTa's padding, [SEP] the
    /// GPT-2 EOS. The classifier's id2label is the preset's (the runner puts the data's answers there).
    /// </summary>
    public override (VisionLanguageModel Model, VisionLanguageProcessor Processor) CreateFromScratch(string presetJson, IReadOnlyList<string> vocab, string folder)
    {
        Directory.CreateDirectory(folder);
        WordPieceVocabulary.Write(Path.Combine(folder, "vocab.txt"), vocab);
        var root = JsonObjects.Parse(presetJson, "preset", "config.json");
        var text = root["text_config"] as JsonObject ?? new JsonObject();
        text["vocab_size"] = vocab.Count;
        if (root["model_type"]?.GetValue<string>() == VitRobertaVqaConfig.Type)
        {
            text["pad_token_id"] = 0;
            text["bos_token_id"] = 2;
            text["eos_token_id"] = 3;
        }
        else
        {
            text["bos_token_id"] = 3;
            text["eos_token_id"] = 3;
        }
        root["text_config"] = text;
        var model = Create(root.ToJsonString(), "preset");
        return (model, LoadProcessor(model, folder));
    }
}
