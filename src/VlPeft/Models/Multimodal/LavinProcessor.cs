using TorchSharp;
using VlPeft.Imaging;
using VlPeft.Models.Configs;
using VlPeft.Text.Tokenizers;
using static TorchSharp.torch;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// LaVIN's input layout (models.md §9.5): BOS, "Image: " and one placeholder per visual token (text-only:
/// "Image: N/A"), the prompt, then the target and EOS, each segment encoded without special tokens, cut to
/// <see cref="MaxLength"/> and padded on the right. Labels are −100 on the prompt and padding. The model puts
/// the modality token in front. Images: resize and ImageNet normalisation, no augmentation (LaVIN has none).
/// </summary>
public sealed class LavinProcessor : VisionLanguageProcessor
{
    public const string ImagePrompt = "Image: ", NoImagePrompt = "Image: N/A";

    readonly TextTokenizer tokenizer;
    readonly ImagePipeline images;
    readonly LavinConfig config;

    public LavinProcessor(TextTokenizer tokenizer, LavinConfig config, int maxLength = 512)
    {
        this.tokenizer = tokenizer;
        this.config = config;
        images = new ImagePipeline(config.Vision.ImageSize, ImageNormalization.ImageNet);
        MaxLength = maxLength;
    }

    public int MaxLength { get; }
    public TextTokenizer Tokenizer => tokenizer;

    /// <summary>BOS (the tokenizer's prefix) + image segment + prompt.</summary>
    public List<int> PromptIds(bool hasImage, string instruction)
    {
        var ids = new List<int>();
        ids.AddRange(tokenizer.Prefix);                                          // BOS
        ids.AddRange(tokenizer.Encode(hasImage ? ImagePrompt : NoImagePrompt, addSpecialTokens: false));
        if (hasImage) ids.AddRange(Enumerable.Repeat(config.ImageTokenIndex, config.NumVisualTokens));
        ids.AddRange(tokenizer.Encode(instruction, addSpecialTokens: false));
        return ids;
    }

    /// <summary>Target tokens + EOS.</summary>
    public List<int> TargetIds(string target)
    {
        var ids = tokenizer.Encode(target, addSpecialTokens: false).ToList();
        if (tokenizer.EosId is int eos) ids.Add(eos);
        return ids;
    }

    (Tensor Pixels, Tensor Indicators) Pixels(IReadOnlyList<string?> paths)
    {
        var pixels = paths.Select(images.EvalOrBlank).ToArray();
        return (torch.stack(pixels), torch.tensor(paths.Select(p => p is null ? 0L : 1L).ToArray()));
    }

    VisionLanguageInputs Batch(IReadOnlyList<string?> paths, IReadOnlyList<(List<int> Prompt, List<int> Target)> rows)
    {
        var sequences = rows.Select(r => r.Prompt.Concat(r.Target).Take(MaxLength).ToArray()).ToList();
        int length = Math.Max(1, sequences.Max(s => s.Length));
        int pad = tokenizer.PadId ?? 0;
        var ids = new long[rows.Count * length];
        var mask = new long[rows.Count * length];
        var labels = new long[rows.Count * length];
        for (int b = 0; b < rows.Count; b++)
            for (int t = 0; t < length; t++)
            {
                bool token = t < sequences[b].Length;
                ids[b * length + t] = token ? sequences[b][t] : pad;
                mask[b * length + t] = token ? 1 : 0;
                labels[b * length + t] = token && t >= rows[b].Prompt.Count ? sequences[b][t] : -100;
            }
        var (pixels, indicators) = Pixels(paths);
        return new VisionLanguageInputs(pixels, torch.tensor(ids).view(rows.Count, length), torch.tensor(mask).view(rows.Count, length),
            Labels: torch.tensor(labels).view(rows.Count, length), ImageIndicators: indicators);
    }

    public override VisionLanguageInputs TrainingBatch(IReadOnlyList<TextExample> examples, Random? augment = null) =>
        Batch(examples.Select(e => e.ImagePath).ToList(), examples.Select(e => (PromptIds(e.ImagePath != null, e.Instruction), TargetIds(e.Target))).ToList());

    public override VisionLanguageInputs CandidateBatch(string? imagePath, string instruction, IReadOnlyList<string> candidates)
    {
        var prompt = PromptIds(imagePath != null, instruction);
        return Batch(Enumerable.Repeat(imagePath, candidates.Count).ToList(), candidates.Select(c => (prompt, TargetIds(c))).ToList());
    }

    public override VisionLanguageInputs PromptBatch(string? imagePath, string instruction)
    {
        var ids = PromptIds(imagePath != null, instruction).Take(MaxLength).Select(i => (long)i).ToArray();
        var (pixels, indicators) = Pixels(new[] { imagePath });
        return new VisionLanguageInputs(pixels, torch.tensor(ids).unsqueeze(0), ImageIndicators: indicators);
    }

    public override int? EosId => tokenizer.EosId;

    public override string Decode(IReadOnlyList<int> ids) => tokenizer.Decode(ids).Trim();
}
