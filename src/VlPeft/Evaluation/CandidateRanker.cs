using TorchSharp;
using VlPeft.Runtime;
using VlPeft.Models.Language;
using VlPeft.Models.Multimodal;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Evaluation;

/// <summary>How a candidate's per-token losses become its score (datasets-and-metrics.md §8.1).</summary>
public enum NllReduction
{
    /// <summary>LAVIS T5: the sum of token NLL over the candidate's tokens.</summary>
    Sum,
    /// <summary>LAVIS LLaMA: the mean over the full padded sequence length (ignored positions count as 0).</summary>
    MeanOverPaddedLength,
}

/// <summary>
/// InstructBLIP PEFT's evaluation: score every candidate answer by its LM loss given the image and the
/// instruction, and pick the lowest. The image and instruction are encoded once per example; the LM
/// input is not truncated (the Q-Former text still is).
/// </summary>
public sealed class CandidateRanker
{
    readonly BlipForConditionalGeneration model;
    readonly BlipProcessor processor;

    public CandidateRanker(BlipForConditionalGeneration model, BlipProcessor processor, NllReduction? reduction = null)
    {
        this.model = model;
        this.processor = processor;
        Reduction = reduction ?? (model.Config.DecoderOnly ? NllReduction.MeanOverPaddedLength : NllReduction.Sum);
    }

    public NllReduction Reduction { get; }

    /// <summary>Scores (lower is better) and the argmin index.</summary>
    public (int Best, double[] Scores) Rank(string? imagePath, string instruction, IReadOnlyList<string> candidates)
    {
        using var quiet = GcQuietRegion.Enter();   // implicit Scalars must outlive their native calls
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        model.eval();
        int n = candidates.Count;
        var pixels = processor.Pixels(new[] { imagePath });
        var q = processor.QFormerText(new[] { instruction });
        var (_, _, projected) = model.EncodeImage(pixels, q?.Ids, q?.Mask);
        var prompt = processor.InstructionIds(instruction, truncate: false);
        var answers = candidates.Select(processor.AnswerIds).ToList();
        var lm = LmBatch.Build(Enumerable.Repeat(prompt, n).ToList(), answers, processor.DecoderOnly, processor.PadId, int.MaxValue, processor.MaxOutputTokens);
        var projectedN = projected.expand(n, -1, -1);
        Tensor tokenLoss;       // [n, positions], 0 where ignored
        if (model.LanguageModel is T5Model t5)
        {
            var (embeds, mask) = model.AssembleInputs(projectedN, lm.InputIds, lm.AttentionMask);
            var memory = t5.Encode(embeds, mask);
            var logits = t5.Decode(memory, mask, t5.ShiftRight(lm.Labels), null);
            tokenLoss = TokenNll(logits, lm.Labels);
        }
        else
        {
            var (embeds, mask) = model.AssembleInputs(projectedN, lm.InputIds, lm.AttentionMask);
            var logits = model.LanguageModel.CausalLogits(embeds, mask);
            long t = lm.Labels.shape[1];
            tokenLoss = TokenNll(logits[.., ^(int)t..][.., ..^1], lm.Labels[.., 1..]);
        }
        var summed = tokenLoss.sum(1);
        var scores = Reduction == NllReduction.Sum ? summed : summed / tokenLoss.shape[1];
        var values = scores.to(ScalarType.Float64).data<double>().ToArray();
        int best = Array.IndexOf(values, values.Min());
        return (best, values);
    }

    /// <summary>Per-position NLL with −100 positions contributing 0.</summary>
    static Tensor TokenNll(Tensor logits, Tensor labels)
    {
        var flat = F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(ScalarType.Float32), labels.reshape(-1), ignore_index: -100, reduction: nn.Reduction.None);
        return flat.view(labels.shape);
    }
}
