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
            var (ids, mask) = Pad(inputs, padId);
            var (labels, labelMask) = Pad(outputs, padId);
            return new Result(ids, mask, labels.masked_fill(labelMask.eq(0), -100));
        }
        var sequences = inputs.Zip(outputs, (i, o) => i.Concat(o).ToArray()).ToList();
        var (seqIds, seqMask) = Pad(sequences, padId);
        var targets = seqIds.masked_fill(seqMask.eq(0), -100);
        for (int b = 0; b < inputs.Count; b++)
            if (inputs[b].Length > 0) targets[b, ..inputs[b].Length] = -100;   // no loss on the instruction
        return new Result(seqIds, seqMask, targets);
    }

    /// <summary>Right padding to the longest sequence; mask 1 on tokens.</summary>
    static (Tensor Ids, Tensor Mask) Pad(IReadOnlyList<int[]> sequences, int padId)
    {
        int length = Math.Max(1, sequences.Max(s => s.Length));
        var ids = new long[sequences.Count * length];
        var mask = new long[sequences.Count * length];
        for (int b = 0; b < sequences.Count; b++)
            for (int t = 0; t < length; t++)
            {
                bool token = t < sequences[b].Length;
                ids[b * length + t] = token ? sequences[b][t] : padId;
                mask[b * length + t] = token ? 1 : 0;
            }
        return (torch.tensor(ids).view(sequences.Count, length), torch.tensor(mask).view(sequences.Count, length));
    }
}
