using TorchSharp;
using VlPeft.Data;
using VlPeft.Models;
using VlPeft.Runtime;
using VlPeft.Text;
using VlPeft.Text.Tokenizers;
using VlPeft.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Experiments;

/// <summary>
/// Pretrains the two towers of a routing-paper model apart, as its ViT (ImageNet-21k tags) and RoBERTa / GPT-2 (text
/// alone) were: the image tower predicts which words of the vocabulary its references use (multi-label BCE of the pooled
/// feature against the frozen word embeddings, so x_v lands where the text tower's inputs live, as a prefix must), and
/// the text tower learns its own objective on the captions and questions (masked tokens or next token). Neither tower
/// sees the other's input. Validation: −(mean of both losses) on the validation captions.
/// </summary>
public sealed class TowerPretrainingTask : ITrainingTask
{
    readonly VisionLanguageModel model;
    readonly ITowerPretraining towers;
    readonly VisionLanguageProcessor processor;
    readonly TextTokenizer tokenizer;
    readonly IReadOnlyList<CaptionRecord> train, validation;
    readonly IReadOnlyList<string> questions;
    readonly int maskId;

    public TowerPretrainingTask(VisionLanguageModel model, VisionLanguageProcessor processor, TextTokenizer tokenizer,
        IReadOnlyList<CaptionRecord> train, IReadOnlyList<CaptionRecord> validation, IReadOnlyList<string> questions)
    {
        this.model = model;
        towers = model as ITowerPretraining ?? throw new BadInputException($"task tower_pretraining needs a model whose towers pretrain apart (the routing paper's); {model.ModelType} is not one");
        this.processor = processor;
        this.tokenizer = tokenizer;
        this.train = train;
        this.validation = validation;
        this.questions = questions;
        // The masked-token objective needs a mask token: BERT's [MASK] (the demo bases' WordPiece vocabulary), else RoBERTa's <mask>.
        maskId = tokenizer.Inner is Microsoft.ML.Tokenizers.BertTokenizer bert ? bert.MaskingTokenId
            : tokenizer.AddedTokenId("<mask>") ?? (model is Models.Multimodal.VitRobertaForVqa ? throw new BadInputException("the tokenizer has no mask token for RoBERTa's masked-token pretraining") : -1);
    }

    public int TrainCount => train.Count;

    public Tensor Loss(IReadOnlyList<int> examples, int epoch, Random random)
    {
        var images = examples.Select(i => train[i]).ToList();
        // Text: one reference of each image, and as many questions drawn at random (RoBERTa reads questions later).
        var texts = images.Select(r => r.References[random.Next(r.References.Count)])
            .Concat(questions.Count == 0 ? Array.Empty<string>() : examples.Select(_ => questions[random.Next(questions.Count)])).ToList();
        return Losses(images, texts, random);
    }

    Tensor Losses(IReadOnlyList<CaptionRecord> images, IReadOnlyList<string> texts, Random random)
    {
        using var scope = torch.NewDisposeScope();
        var pixels = processor.TrainingBatch(images.Select(r => new TextExample(r.ImagePath, "", r.References[0])).ToList()).PixelValues;
        var pooled = towers.PooledImage(pixels);
        var vocabulary = towers.WordEmbeddingMatrix.detach();
        var tags = torch.zeros(images.Count, vocabulary.shape[0]);
        for (int b = 0; b < images.Count; b++)
            foreach (var id in images[b].References.SelectMany(t => tokenizer.Encode(t, addSpecialTokens: false)).Distinct())
                tags[b, id] = 1;
        var tagLoss = F.binary_cross_entropy_with_logits(pooled.matmul(vocabulary.t()).to(ScalarType.Float32), tags);
        var (ids, mask) = TextBatch(texts);
        var textLoss = towers.TextOnlyLoss(ids, mask, maskId, random);
        return (tagLoss + textLoss).MoveToOuterDisposeScope();
    }

    /// <summary>Text ids padded with the tokenizer's pad id (or EOS, GPT-2's padding), and their mask.</summary>
    (Tensor Ids, Tensor Mask) TextBatch(IReadOnlyList<string> texts) =>
        PaddedIds.Of(texts.Select(t => (IReadOnlyList<int>)tokenizer.Encode(t, addSpecialTokens: true).Take(towers.MaxTextTokens).ToList()).ToList(),
            tokenizer.PadId ?? tokenizer.EosId ?? 0);

    public double Validate()
    {
        var random = new Random(0);     // the same masks every epoch
        double total = 0;
        foreach (var chunk in validation.Chunk(16))
        {
            using var quiet = GcQuietRegion.Enter();
            using var scope = torch.NewDisposeScope();
            total += Losses(chunk, chunk.Select(r => r.References[0]).ToList(), random).item<float>() * chunk.Length;
        }
        return -total / validation.Count;
    }
}
