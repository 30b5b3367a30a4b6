using TorchSharp;
using VlPeft.Imaging;
using VlPeft.Models;
using VlPeft.Text.Tokenizers;
using static TorchSharp.torch;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// HF InstructBlipProcessor's job in VlPeft: images through the image pipeline, the instruction
/// through the Q-Former tokenizer (truncated from the left to <see cref="MaxTextTokens"/>) and the LM
/// tokenizer, answers through the LM tokenizer (with EOS), assembled the LAVIS way by <see cref="LmBatch"/>.
/// </summary>
public sealed class BlipProcessor : VisionLanguageProcessor
{
    public BlipProcessor(TextTokenizer lmTokenizer, TextTokenizer? qformerTokenizer, ImagePipeline images, bool decoderOnly,
        int maxTextTokens = 128, int maxOutputTokens = 256)
    {
        LmTokenizer = lmTokenizer;
        QFormerTokenizer = qformerTokenizer;
        Images = images;
        DecoderOnly = decoderOnly;
        MaxTextTokens = maxTextTokens;
        MaxOutputTokens = maxOutputTokens;
    }

    public TextTokenizer LmTokenizer { get; }
    public TextTokenizer? QFormerTokenizer { get; }
    public ImagePipeline Images { get; }
    public bool DecoderOnly { get; }
    public int MaxTextTokens { get; }
    public int MaxOutputTokens { get; }
    public int PadId => LmTokenizer.PadId ?? 0;

    /// <summary>Answer tokens followed by EOS, without BOS/CLS (T5's tokenizer appends EOS itself).</summary>
    public int[] AnswerIds(string answer)
    {
        if (LmTokenizer.Kind == "t5") return LmTokenizer.Encode(answer).ToArray();
        var ids = LmTokenizer.Encode(answer, addSpecialTokens: false).ToList();
        if (LmTokenizer.EosId is int eos) ids.Add(eos);
        return ids.ToArray();
    }

    public int[] InstructionIds(string instruction, bool truncate = true) =>
        (truncate ? LmTokenizer.Encode(instruction, MaxTextTokens) : LmTokenizer.Encode(instruction)).ToArray();

    /// <summary>Q-Former text ids and mask, truncated from the left like LAVIS's max_txt_len.</summary>
    public (Tensor Ids, Tensor Mask)? QFormerText(IReadOnlyList<string> instructions)
    {
        if (QFormerTokenizer is null) return null;
        var rows = instructions.Select(i => QFormerTokenizer.Encode(i, MaxTextTokens).ToArray()).ToList();
        int length = rows.Max(r => r.Length);
        var ids = new long[rows.Count * length];
        var mask = new long[rows.Count * length];
        for (int b = 0; b < rows.Count; b++)
            for (int t = 0; t < rows[b].Length; t++)
            {
                ids[b * length + t] = rows[b][t];
                mask[b * length + t] = 1;
            }
        return (torch.tensor(ids).view(rows.Count, length), torch.tensor(mask).view(rows.Count, length));
    }

    public Tensor Pixels(IReadOnlyList<string?> imagePaths, Random? trainRandom = null)
    {
        var tensors = imagePaths.Select(p => p is null
            ? torch.zeros(3, Images.Size, Images.Size)          // text-only records get a blank image
            : trainRandom is null ? Images.Eval(p) : Images.Train(p, trainRandom)).ToArray();
        return torch.stack(tensors);
    }

    /// <summary>A training batch: pixels, Q-Former text, LM inputs and masked labels.</summary>
    public override VisionLanguageInputs TrainingBatch(IReadOnlyList<TextExample> examples, Random? augment = null)
    {
        var lm = LmBatch.Build(examples.Select(e => InstructionIds(e.Instruction)).ToList(), examples.Select(e => AnswerIds(e.Target)).ToList(),
            DecoderOnly, PadId, MaxTextTokens, MaxOutputTokens);
        var q = QFormerText(examples.Select(e => e.Instruction).ToList());
        return new VisionLanguageInputs(Pixels(examples.Select(e => e.ImagePath).ToList(), augment), lm.InputIds, lm.AttentionMask,
            q?.Ids, q?.Mask, Labels: lm.Labels);
    }

    /// <summary>The LM input is not truncated when ranking (the Q-Former text still is), as in LAVIS.</summary>
    public override VisionLanguageInputs CandidateBatch(string? imagePath, string instruction, IReadOnlyList<string> candidates)
    {
        var prompt = InstructionIds(instruction, truncate: false);
        var lm = LmBatch.Build(Enumerable.Repeat(prompt, candidates.Count).ToList(), candidates.Select(AnswerIds).ToList(), DecoderOnly, PadId,
            int.MaxValue, MaxOutputTokens);
        var q = QFormerText(new[] { instruction });
        return new VisionLanguageInputs(Pixels(new[] { imagePath }), lm.InputIds, lm.AttentionMask, q?.Ids, q?.Mask, Labels: lm.Labels);
    }

    public override VisionLanguageInputs PromptBatch(string? imagePath, string instruction)
    {
        var ids = torch.tensor(InstructionIds(instruction).Select(i => (long)i).ToArray()).unsqueeze(0);
        var q = QFormerText(new[] { instruction });
        return new VisionLanguageInputs(Pixels(new[] { imagePath }), ids, null, q?.Ids, q?.Mask);
    }

    public override int? EosId => LmTokenizer.EosId;

    public override string Decode(IReadOnlyList<int> ids) => LmTokenizer.Decode(ids).Trim();
}
