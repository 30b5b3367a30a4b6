using VlPeft.Models;
using VlPeft.Models.Multimodal;

namespace VlPeft.Tests.Models;

public class LmBatchTests
{
    static long[] Row(TorchSharp.torch.Tensor t, int b) => t[b].data<long>().ToArray();

    [Fact]
    public void Decoder_only_sequences_mask_instruction_and_padding_and_truncate_the_instruction_from_the_left()
    {
        var instructions = new[] { new[] { 1, 11, 12, 13, 14 }, new[] { 1, 21 } };
        var answers = new[] { new[] { 31, 2 }, new[] { 41, 42, 43, 2 } };
        var batch = LmBatch.Build(instructions, answers, decoderOnly: true, padId: 0, maxInputTokens: 3);
        // Row 0: the instruction keeps its last 3 tokens [12, 13, 14], then the answer.
        Assert.Equal(new long[] { 12, 13, 14, 31, 2, 0 }, Row(batch.InputIds, 0));
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 0 }, Row(batch.AttentionMask, 0));
        Assert.Equal(new long[] { -100, -100, -100, 31, 2, -100 }, Row(batch.Labels, 0));
        Assert.Equal(new long[] { 1, 21, 41, 42, 43, 2 }, Row(batch.InputIds, 1));
        Assert.Equal(new long[] { -100, -100, 41, 42, 43, 2 }, Row(batch.Labels, 1));
    }

    [Fact]
    public void T5_keeps_instruction_and_answer_apart_and_truncates_the_answer_from_the_right()
    {
        var batch = LmBatch.Build(new[] { new[] { 5, 6, 1 }, new[] { 7, 1 } }, new[] { new[] { 8, 9, 10, 1 }, new[] { 11, 1 } },
            decoderOnly: false, padId: 0, maxOutputTokens: 3);
        Assert.Equal(new long[] { 5, 6, 1 }, Row(batch.InputIds, 0));
        Assert.Equal(new long[] { 7, 1, 0 }, Row(batch.InputIds, 1));
        Assert.Equal(new long[] { 1, 1, 0 }, Row(batch.AttentionMask, 1));
        Assert.Equal(new long[] { 8, 9, 10 }, Row(batch.Labels, 0));
        Assert.Equal(new long[] { 11, 1, -100 }, Row(batch.Labels, 1));
    }
}
