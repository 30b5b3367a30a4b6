using System.Text.Json;
using TorchSharp;
using VlPeft.Models;
using VlPeft.Experiments;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;
using VlPeft.Peft;
using VlPeft.Tests.Cli;
using static TorchSharp.torch;

namespace VlPeft.Tests.Models;

public class PeftPresetTests
{
    // tiny-instructblip-t5: Q-Former 4 layers (cross-attention in 0 and 2), T5 with 2 encoder and 2 decoder blocks.
    static IEnumerable<string> QSelf() => from i in Enumerable.Range(0, 4) from m in new[] { "query", "value" } select $"qformer.encoder.layer.{i}.attention.attention.{m}";
    static IEnumerable<string> QCross() => from i in new[] { 0, 2 } from m in new[] { "attention.query", "attention.key", "attention.value", "output.dense" } select $"qformer.encoder.layer.{i}.crossattention.{m}";
    static IEnumerable<string> QFfn() => from i in Enumerable.Range(0, 4) from m in new[] { "intermediate", "output", "intermediate_query", "output_query" } select $"qformer.encoder.layer.{i}.{m}.dense";
    static IEnumerable<string> T5Attn() =>
        (from i in new[] { 0, 1 } from m in new[] { "q", "v" } select $"language_model.encoder.block.{i}.layer.0.SelfAttention.{m}")
        .Concat(from i in new[] { 0, 1 } from m in new[] { "q", "v" } select $"language_model.decoder.block.{i}.layer.0.SelfAttention.{m}")
        .Concat(from i in new[] { 0, 1 } from m in new[] { "q", "v" } select $"language_model.decoder.block.{i}.layer.1.EncDecAttention.{m}");
    static IEnumerable<string> T5Ffn() =>
        (from i in new[] { 0, 1 } from m in new[] { "wi_0", "wi_1", "wo" } select $"language_model.encoder.block.{i}.layer.1.DenseReluDense.{m}")
        .Concat(from i in new[] { 0, 1 } from m in new[] { "wi_0", "wi_1", "wo" } select $"language_model.decoder.block.{i}.layer.2.DenseReluDense.{m}");

    public static TheoryData<string, string[]> Targets() => new()
    {
        { "qformer-lora-self", QSelf().ToArray() },
        { "qformer-lora-cross", QCross().ToArray() },
        { "qformer-lora-ffn", QFfn().ToArray() },
        { "qformer-lora-all", QSelf().Concat(QCross()).Concat(QFfn()).ToArray() },
        { "llm-lora-attn", T5Attn().ToArray() },
        { "llm-lora-ffn", T5Ffn().ToArray() },
        { "llm-lora-all", T5Attn().Concat(T5Ffn()).ToArray() },
        { "qformer-llm-lora", QSelf().Concat(QCross()).Concat(QFfn()).Concat(T5Attn()).Concat(T5Ffn()).ToArray() },
    };

    [Theory]
    [MemberData(nameof(Targets))]
    public void Each_preset_adapts_exactly_the_modules_the_paper_names(string preset, string[] expected)
    {
        var config = ModelPresets.Get("tiny-instructblip-t5");
        using var model = new BlipForConditionalGeneration(config, new ModelBuildOptions { Device = torch.META });
        var peft = BlipPeftPresets.Get(preset, config, rank: 2).Apply(model)!;
        Assert.Equal(expected.OrderBy(x => x), peft.AdaptedLayers().Select(t => t.Path).OrderBy(x => x));
    }

    [Fact]
    public void Llama_targets_use_the_hf_llama_names()
    {
        var config = ModelPresets.Get("tiny-instructblip-vicuna");
        using var model = new BlipForConditionalGeneration(config, new ModelBuildOptions { Device = torch.META });
        var paths = BlipPeftPresets.Get("llm-lora-all", config, 2).Apply(model)!.AdaptedLayers().Select(t => t.Path).OrderBy(x => x);
        var expected = from i in new[] { 0, 1 }
                       from m in new[] { "self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" }
                       select $"language_model.model.layers.{i}.{m}";
        Assert.Equal(expected.OrderBy(x => x), paths);
    }

    [Theory]
    [InlineData("qformer-lora-self", false)]
    [InlineData("llm-lora-ffn", true)]
    [InlineData("qformer-full", true)]
    public void Trainable_sets_follow_the_paper(string preset, bool wholeQFormer)
    {
        var config = ModelPresets.Get("tiny-instructblip-t5");
        using var model = new BlipForConditionalGeneration(config, new ModelBuildOptions { Device = torch.META });
        BlipPeftPresets.Get(preset, config, 2).Apply(model);
        foreach (var (name, p) in model.named_parameters())
        {
            // InstructBLIP_PEFT trains LAVIS's ln_vision (HF vision_model.post_layernorm) in every experiment.
            bool expected = name.Contains(".lora_") || name == "query_tokens" || name.StartsWith("language_projection.")
                || name.StartsWith("vision_model.post_layernorm.") || (wholeQFormer && name.StartsWith("qformer."));
            Assert.True(expected == p.requires_grad, name);
        }
    }

    /// <summary>Parameter counts of tiny-instructblip-t5 from the config's shapes alone.</summary>
    static long BaseCount(MultimodalConfig c, out long vision, out long qformer, out long lm)
    {
        var v = c.Vision;
        long Lin(long i, long o, bool bias = true) => i * o + (bias ? o : 0);
        long ln = 2 * v.HiddenSize;
        vision = (v.NumChannels * v.PatchSize * v.PatchSize * v.HiddenSize + v.HiddenSize) + v.HiddenSize + (v.NumPatches + 1) * v.HiddenSize
            + v.NumHiddenLayers * (ln + Lin(v.HiddenSize, 3 * v.HiddenSize) + Lin(v.HiddenSize, v.HiddenSize) + ln + Lin(v.HiddenSize, v.IntermediateSize) + Lin(v.IntermediateSize, v.HiddenSize))
            + ln;
        var q = c.QFormer;
        long h = q.HiddenSize, qln = 2 * h;
        qformer = q.VocabSize * h + q.MaxPositionEmbeddings * h + qln;
        for (int i = 0; i < q.NumHiddenLayers; i++)
        {
            qformer += 4 * Lin(h, h) + qln;                                                   // self-attention + output
            if (i % q.CrossAttentionFrequency == 0) qformer += 2 * Lin(h, h) + 2 * Lin(q.EncoderHiddenSize, h) + qln;
            qformer += 2 * (Lin(h, q.IntermediateSize) + Lin(q.IntermediateSize, h) + qln); // text and query FFNs
        }
        var t = c.Text;
        long d = t.DModel, inner = t.NumHeads * t.DKv, ff = 2 * d * t.DFf + t.DFf * d;
        lm = t.VocabSize * d
            + t.NumLayers * (4 * d * inner + d + ff + d) + t.RelativeAttentionNumBuckets * t.NumHeads + d
            + (t.NumDecoderLayers ?? t.NumLayers) * (8 * d * inner + 2 * d + ff + d) + t.RelativeAttentionNumBuckets * t.NumHeads + d
            + t.VocabSize * d;
        return vision + qformer + c.NumQueryTokens * h + Lin(h, d) + lm;
    }

    [Fact]
    public void Params_command_counts_match_an_independent_count_from_shapes()
    {
        var c = ModelPresets.Get("tiny-instructblip-t5");
        long total = BaseCount(c, out long vision, out long qformer, out long lm);
        long queries = c.NumQueryTokens * c.QFormer.HiddenSize, projection = c.QFormer.HiddenSize * c.Text.DModel + c.Text.DModel;
        // qformer-lora-all at r = 2: r·(in + out) per adapted layer.
        long h = c.QFormer.HiddenSize, i = c.QFormer.IntermediateSize, e = c.QFormer.EncoderHiddenSize;
        long lora = 2 * (4 * 2 * (h + h)                          // self q, v in 4 layers
                       + 2 * ((h + h) + 2 * (e + h) + (h + h))     // cross q, k, v, o in 2 layers
                       + 4 * 2 * ((h + i) + (i + h)));            // 4 FFN linears in 4 layers

        var (code, output, error) = CliRunner.Run("params", "--preset", "tiny-instructblip-t5", "--peft", "qformer-lora-all", "--rank", "2", "--json");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        var components = root.GetProperty("components").EnumerateArray().ToDictionary(x => x.GetProperty("name").GetString()!, x => (x.GetProperty("total").GetInt64(), x.GetProperty("trainable").GetInt64()));
        long visionNorm = 2 * c.Vision.HiddenSize;   // post_layernorm weight + bias (LAVIS's trainable ln_vision)
        Assert.Equal((vision, visionNorm), components["vision_model"]);
        Assert.Equal((qformer + lora, lora), components["qformer"]);
        Assert.Equal((queries, queries), components["query_tokens"]);
        Assert.Equal((projection, projection), components["language_projection"]);
        Assert.Equal((lm, 0L), components["language_model"]);
        Assert.Equal(total + lora, root.GetProperty("total").GetInt64());
        long trainable = lora + queries + projection + visionNorm;
        Assert.Equal(trainable, root.GetProperty("trainable").GetInt64());
        Assert.Equal(qformer + queries + projection, root.GetProperty("baseline_trainable").GetInt64());
        Assert.Equal(100.0 * trainable / (total + lora), root.GetProperty("trainable_percent").GetDouble(), 9);
        Assert.Equal(100.0 * trainable / (qformer + queries + projection), root.GetProperty("trainable_percent_of_baseline").GetDouble(), 9);
    }

    [Fact]
    public void Paper_presets_build_without_weights()
    {
        var (code, output, error) = CliRunner.Run("params", "--preset", "instructblip-vicuna-7b", "--peft", "qformer-lora-self", "--rank", "1", "--json");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        long total = doc.RootElement.GetProperty("total").GetInt64();
        Assert.InRange(total, 7_800_000_000, 8_000_000_000); // InstructBLIP-Vicuna-7B is 7.9B
        // self q, v in 12 layers at r = 1: 24 · (768 + 768).
        Assert.Equal(24 * 1536 + 32 * 768 + 768 * 4096 + 4096 + 2 * 1408, doc.RootElement.GetProperty("trainable").GetInt64());
        var bad = CliRunner.Run("params", "--preset", "no-such-model");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("unknown model preset 'no-such-model'", bad.Err);
    }

    public static TheoryData<string, string> EveryPlan()
    {
        var data = new TheoryData<string, string>();
        foreach (var plan in BlipPeftPresets.Names)
        {
            data.Add("tiny-instructblip-t5", plan);
            data.Add("tiny-instructblip-vicuna", plan);
        }
        data.Add("tiny-blip2-opt", "qformer-lora-ffn");
        data.Add("tiny-blip2-t5", "llm-lora-all");
        return data;
    }

    [Theory]
    [MemberData(nameof(EveryPlan))]
    public void Tiny_models_train_a_step_with_every_preset(string modelPreset, string plan)
    {
        torch.manual_seed(60);
        var config = ModelPresets.Get(modelPreset);
        using var model = new BlipForConditionalGeneration(config);
        var peft = BlipPeftPresets.Get(plan, config, rank: 2).Apply(model);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        var frozen = model.named_parameters().Where(p => !p.parameter.requires_grad).Take(5).Select(p => (p.name, p.parameter, Copy: p.parameter.detach().clone())).ToList();
        var before = trainable.Select(p => p.parameter.detach().clone()).ToList();
        var optimizer = torch.optim.AdamW(trainable.Select(p => p.parameter), lr: 1e-2);
        model.train();
        var loss = model.call(TinyInputs.Batch(config.DecoderOnly)).Loss!;
        Assert.True(float.IsFinite(loss.item<float>()));
        loss.backward();
        optimizer.step();
        Assert.Contains(trainable.Zip(before), t => !torch.equal(t.First.parameter, t.Second).all().item<bool>());
        Assert.All(frozen, f => Assert.True(torch.equal(f.parameter, f.Copy).all().item<bool>(), f.name));
        if (plan != "qformer-full") Assert.NotNull(peft);
    }
}
