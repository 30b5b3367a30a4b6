using TorchSharp;
using VlPeft.Imaging;
using VlPeft.Models.Configs;
using VlPeft.Text.Tokenizers;
using static TorchSharp.torch;

using VlPeft.Text;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// Batches for the ViT + RoBERTa classifier: the question with the tokenizer's special tokens, cut to
/// max_question_tokens and padded on the right with the pad id; labels are soft scores over the answer vocabulary.
/// The instruction of the shared contract is the question; a training target is one answer (score 1).
/// </summary>
public sealed class VqaClassifierProcessor : VisionLanguageProcessor
{
    readonly TextTokenizer tokenizer;
    readonly ImagePipeline images;
    readonly VitRobertaVqaConfig config;
    readonly Dictionary<string, int> labelIds;

    public VqaClassifierProcessor(TextTokenizer tokenizer, VitRobertaVqaConfig config, ImagePipeline images)
    {
        this.tokenizer = tokenizer;
        this.config = config;
        this.images = images;
        labelIds = config.Id2Label.Select((label, id) => (label, id)).GroupBy(x => x.label).ToDictionary(g => g.Key, g => g.First().id);
    }

    public IReadOnlyList<string> Labels => config.Id2Label;

    /// <summary>The same tokenizer and images for a model whose answer vocabulary was replaced.</summary>
    public VqaClassifierProcessor WithConfig(VitRobertaVqaConfig replaced) => new(tokenizer, replaced, images);
    public TextTokenizer Tokenizer => tokenizer;
    public int? LabelId(string answer) => labelIds.TryGetValue(answer, out int id) ? id : null;

    /// <summary>Images and questions, with soft scores per example (answer id → score) when training.</summary>
    public VisionLanguageInputs Batch(IReadOnlyList<string?> imagePaths, IReadOnlyList<string> questions, IReadOnlyList<IReadOnlyDictionary<int, float>>? scores = null)
    {
        var (ids, mask) = PaddedIds.Of(questions.Select(q => tokenizer.Encode(q, config.MaxQuestionTokens)).ToList(), tokenizer.PadId ?? config.Text.PadTokenId);
        var pixels = images.EvalBatch(imagePaths);
        Tensor? labels = null;
        if (scores is not null)
        {
            var target = new float[questions.Count * config.NumLabels];
            for (int b = 0; b < scores.Count; b++)
                foreach (var (label, score) in scores[b]) target[b * config.NumLabels + label] = score;
            labels = torch.tensor(target).view(questions.Count, config.NumLabels);
        }
        return new VisionLanguageInputs(pixels, ids, mask, Labels: labels);
    }

    public override VisionLanguageInputs TrainingBatch(IReadOnlyList<TextExample> examples, Random? augment = null) =>
        Batch(examples.Select(e => e.ImagePath).ToList(), examples.Select(e => e.Instruction).ToList(),
            examples.Select(e => (IReadOnlyDictionary<int, float>)(LabelId(e.Target) is int id ? new Dictionary<int, float> { [id] = 1f } : new Dictionary<int, float>())).ToList());

    public override VisionLanguageInputs CandidateBatch(string? imagePath, string instruction, IReadOnlyList<string> candidates) =>
        throw new BadInputException("the VQA classifier scores its whole answer vocabulary; candidate answers do not apply");

    public override VisionLanguageInputs PromptBatch(string? imagePath, string instruction) => Batch(new[] { imagePath }, new[] { instruction });

    public override int? EosId => null;

    /// <summary>A predicted class id → its answer.</summary>
    public override string Decode(IReadOnlyList<int> ids) =>
        ids.Count == 1 && ids[0] >= 0 && ids[0] < config.NumLabels ? config.Id2Label[ids[0]] : throw new ArgumentException("decode takes one class id");
}
