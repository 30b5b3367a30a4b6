using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Models;

public class KvCacheTests
{
    /// <summary>Every step of cached generation, including branches as beam search makes them, equals a full re-run.</summary>
    [Fact]
    public void Cached_llama_decoding_equals_a_full_rerun_at_every_step_and_branch()
    {
        torch.manual_seed(21);
        using var model = new BlipForConditionalGeneration(ModelPresets.Get("tiny-instructblip-vicuna"));
        model.eval();
        var lm = model.LanguageModel;
        using var _ = torch.no_grad();
        var prompt = torch.randn(1, 7, model.Config.Text.HiddenSize);
        Tensor Full(long[] ids)
        {
            var all = ids.Length == 0 ? prompt : torch.cat(new[] { prompt, lm.EmbedTokens(torch.tensor(ids).unsqueeze(0)) }, 1);
            return lm.CausalLogits(all, torch.ones(1, all.shape[1], dtype: ScalarType.Int64))[0, -1];
        }
        using var decoder = lm.StartDecoding(prompt, torch.ones(1, 7, dtype: ScalarType.Int64));
        Assert.Empty(decoder.StartIds);
        var steps = new[]
        {
            new long[0], new long[] { 5 }, new long[] { 5, 9 }, new long[] { 5, 9, 11 },
            new long[] { 5, 4 }, new long[] { 5, 4, 2 },               // a second beam branches after the first token
            new long[] { 5, 9, 11, 3 }, new long[] { 5, 9, 11 },       // back to the first, then a shorter sequence
            new long[] { 7, 7, 7 },                                     // nothing shared
        };
        foreach (var ids in steps)
            TensorAssert.Close(Full(ids), decoder.NextLogits(ids), 1e-5);
    }
}
