using TorchSharp;
using VlPeft.Imaging;
using VlPeft.Models.Configs;
using VlPeft.Text.Tokenizers;
using static TorchSharp.torch;

using VlPeft.Text;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// Batches for the ViT + GPT-2 captioner: the caption's tokens (no special tokens) and EOS, at most max_caption_tokens,
/// padded with EOS as the reference code does (the attention mask and the −100 labels keep padding out). There is no
/// prompt: the instruction of the shared contract is ignored, and generation starts from the image alone.
/// </summary>
public sealed class CaptioningProcessor : VisionLanguageProcessor
{
    readonly TextTokenizer tokenizer;
    readonly ImagePipeline images;
    readonly VitGpt2CaptioningConfig config;

    public CaptioningProcessor(TextTokenizer tokenizer, VitGpt2CaptioningConfig config, ImagePipeline images)
    {
        this.tokenizer = tokenizer;
        this.config = config;
        this.images = images;
    }

    public TextTokenizer Tokenizer => tokenizer;
    int Eos => tokenizer.EosId ?? config.Text.EosTokenId;

    public List<int> CaptionIds(string caption)
    {
        var ids = tokenizer.Encode(caption.Trim(), addSpecialTokens: false).Take(config.MaxCaptionTokens - 1).ToList();
        ids.Add(Eos);
        return ids;
    }

    /// <summary>Captions padded with EOS (GPT-2's padding); labels are the caption tokens, −100 on padding.</summary>
    VisionLanguageInputs Batch(IReadOnlyList<string?> paths, IReadOnlyList<List<int>> captions)
    {
        var (ids, mask) = PaddedIds.Of(captions, Eos);
        return new VisionLanguageInputs(images.EvalBatch(paths), ids, mask, Labels: torch.where(mask.eq(1), ids, torch.full_like(ids, -100)));
    }

    public override VisionLanguageInputs TrainingBatch(IReadOnlyList<TextExample> examples, Random? augment = null) =>
        Batch(examples.Select(e => e.ImagePath).ToList(), examples.Select(e => CaptionIds(e.Target)).ToList());

    public override VisionLanguageInputs CandidateBatch(string? imagePath, string instruction, IReadOnlyList<string> candidates) =>
        Batch(Enumerable.Repeat(imagePath, candidates.Count).ToList(), candidates.Select(CaptionIds).ToList());

    public override VisionLanguageInputs PromptBatch(string? imagePath, string instruction)
    {
        var pixels = images.EvalOrBlank(imagePath).unsqueeze(0);
        return new VisionLanguageInputs(pixels, torch.zeros(1, 0, dtype: ScalarType.Int64));
    }

    public override int? EosId => Eos;

    /// <summary>Text without EOS and newlines (the reference strips both).</summary>
    public override string Decode(IReadOnlyList<int> ids) => tokenizer.Decode(ids).Replace("\n", " ").Trim();
}
