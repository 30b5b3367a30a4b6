using VlPeft.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// LM inputs and labels the way the LAVIS InstructBLIP recipe (used by the Q-Former PEFT paper)
/// builds them from tokenized instructions and answers (models.md §3.6):
/// instructions truncated from the left to <c>maxInputTokens</c>, answers from the right to
/// <c>maxOutputTokens</c> (answers arrive with their EOS). T5: encoder input = instruction,
/// labels = answer with padding → −100. Decoder-only: one sequence [instruction | answer | padding]
/// with labels −100 on the instruction and the padding, covering the text part of the LM input.
/// </summary>
public static class LmBatch
{
    public sealed record Result(Tensor InputIds, Tensor AttentionMask, Tensor Labels);

    public static Result Build(IReadOnlyList<int[]> instructions, IReadOnlyList<int[]> answers, bool decoderOnly, int padId,
        int maxInputTokens = 128, int maxOutputTokens = 256)
    {
        if (instructions.Count != answers.Count) throw new ArgumentException("one answer per instruction");
        var inputs = instructions.Select(i => i.Length > maxInputTokens ? i[^maxInputTokens..] : i).ToList(); // left truncation
        var outputs = answers.Select(a => a.Length > maxOutputTokens ? a[..maxOutputTokens] : a).ToList();    // right truncation
        if (!decoderOnly)
        {
            var (ids, mask) = PaddedIds.Of(inputs, padId);
            var (labels, labelMask) = PaddedIds.Of(outputs, padId);
            return new Result(ids, mask, labels.masked_fill(labelMask.eq(0), -100));
        }
        var sequences = inputs.Zip(outputs, (i, o) => i.Concat(o).ToArray()).ToList();
        var (seqIds, seqMask) = PaddedIds.Of(sequences, padId);
        var targets = seqIds.masked_fill(seqMask.eq(0), -100);
        for (int b = 0; b < inputs.Count; b++)
            if (inputs[b].Length > 0) targets[b, ..inputs[b].Length] = -100;   // no loss on the instruction
        return new Result(seqIds, seqMask, targets);
    }
}
