using TorchSharp;
using VlPeft.Analysis;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;
using VlPeft.Tests.Models;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Routing;

/// <summary>The routing paper's pipelines against raw-op references by HF parameter name (float64, eval mode).</summary>
public class RoutingModelTests
{
    static T Randomized<T>(T model) where T : nn.Module
    {
        model.to(ScalarType.Float64);
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters()) p.copy_(torch.randn_like(p) * 0.2 + (p.dim() == 1 ? 1.0 : 0.0));
        model.eval();
        return model;
    }

    /// <summary>HF ViTModel: pre-LN layers, final layernorm, pooler = tanh(dense(h[:, 0])).</summary>
    static Tensor VitPooled(ReferenceOps r, Tensor pixels, VisionConfig c)
    {
        var h = torch.nn.functional.conv2d(pixels, r.P("vit.embeddings.patch_embeddings.projection.weight"), r.P("vit.embeddings.patch_embeddings.projection.bias"),
            strides: new long[] { c.PatchSize, c.PatchSize }).flatten(2).transpose(1, 2);
        h = torch.cat(new[] { r.P("vit.embeddings.cls_token").expand(h.shape[0], 1, -1), h }, 1) + r.P("vit.embeddings.position_embeddings");
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string l = $"vit.encoder.layer.{i}.";
            var x = r.LN(h, l + "layernorm_before", c.LayerNormEps);
            var ctx = ReferenceOps.Attend(ReferenceOps.Heads(r.Lin(x, l + "attention.attention.query"), c.NumAttentionHeads),
                ReferenceOps.Heads(r.Lin(x, l + "attention.attention.key"), c.NumAttentionHeads),
                ReferenceOps.Heads(r.Lin(x, l + "attention.attention.value"), c.NumAttentionHeads), 1 / Math.Sqrt(c.HiddenSize / c.NumAttentionHeads));
            h = h + r.Lin(ReferenceOps.Merge(ctx), l + "attention.output.dense");
            h = h + r.Lin(ReferenceOps.Gelu(r.Lin(r.LN(h, l + "layernorm_after", c.LayerNormEps), l + "intermediate.dense")), l + "output.dense");
        }
        return torch.tanh(r.Lin(r.LN(h, "vit.layernorm", c.LayerNormEps)[.., 0], "vit.pooler.dense"));
    }

    [Fact]
    public void Vit_roberta_vqa_logits_equal_the_reference()
    {
        torch.manual_seed(21);
        var config = VitRobertaVqaConfig.Parse(ModelPresets.Json("tiny-vit-roberta-vqa"), "preset");
        using var model = Randomized(new VitRobertaForVqa(config));
        var r = new ReferenceOps(model);
        var t = config.Text;
        using var pixels = torch.randn(2, 3, config.Vision.ImageSize, config.Vision.ImageSize, dtype: ScalarType.Float64);
        using var ids = torch.tensor(new long[] { 5, 9, 3, 0, 7, 2, 11, 4 }).view(2, 4);
        using var mask = torch.tensor(new long[] { 1, 1, 1, 0, 1, 1, 1, 1 }).view(2, 4);

        // nn.LayerNorm(1536) in the head keeps PyTorch's default eps 1e-5. [x_v; words] + positions from pad + 1 + token type 0, then post-LN BERT layers; the pooler on position 0.
        var xv = VitPooled(r, pixels, config.Vision).unsqueeze(1);
        var words = r.P("roberta.embeddings.word_embeddings.weight").index_select(0, ids.flatten()).view(2, 4, -1);
        var h = torch.cat(new[] { xv, words }, 1);
        h = h + r.P("roberta.embeddings.position_embeddings.weight")[(t.PadTokenId + 1)..(t.PadTokenId + 6)] + r.P("roberta.embeddings.token_type_embeddings.weight")[0];
        h = r.LN(h, "roberta.embeddings.LayerNorm", t.LayerNormEps);
        var additive = ReferenceOps.PadMask(torch.cat(new[] { torch.ones(2, 1, dtype: ScalarType.Int64), mask }, 1));
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            string l = $"roberta.encoder.layer.{i}.";
            var ctx = ReferenceOps.Attend(ReferenceOps.Heads(r.Lin(h, l + "attention.self.query"), t.NumAttentionHeads),
                ReferenceOps.Heads(r.Lin(h, l + "attention.self.key"), t.NumAttentionHeads),
                ReferenceOps.Heads(r.Lin(h, l + "attention.self.value"), t.NumAttentionHeads), 1 / Math.Sqrt(t.HiddenSize / t.NumAttentionHeads), additive);
            h = r.LN(h + r.Lin(ReferenceOps.Merge(ctx), l + "attention.output.dense"), l + "attention.output.LayerNorm", t.LayerNormEps);
            h = r.LN(h + r.Lin(ReferenceOps.Gelu(r.Lin(h, l + "intermediate.dense")), l + "output.dense"), l + "output.LayerNorm", t.LayerNormEps);
        }
        var pooled = torch.tanh(r.Lin(h[.., 0], "roberta.pooler.dense"));
        var logits = r.Lin(ReferenceOps.Gelu(r.LN(r.Lin(pooled, "classifier.0"), "classifier.1", 1e-5)), "classifier.3");

        var output = model.call(new VisionLanguageInputs(pixels, ids, mask));
        TensorAssert.Close(logits, output.Logits, 1e-8);
    }

    [Fact]
    public void Vit_gpt2_logits_equal_the_reference()
    {
        torch.manual_seed(22);
        var config = VitGpt2CaptioningConfig.Parse(ModelPresets.Json("tiny-vit-gpt2-captioning"), "preset");
        using var model = Randomized(new VitGpt2ForCaptioning(config));
        var r = new ReferenceOps(model);
        var t = config.Text;
        using var pixels = torch.randn(2, 3, config.Vision.ImageSize, config.Vision.ImageSize, dtype: ScalarType.Float64);
        using var ids = torch.tensor(new long[] { 5, 9, 3, 3, 7, 2, 11, 4 }).view(2, 4);
        using var mask = torch.tensor(new long[] { 1, 1, 1, 0, 1, 1, 1, 1 }).view(2, 4);

        // Conv1D: x·W + b with W [in, out]; c_attn splits into q | k | v; pre-LN blocks, gelu_new, tied head.
        Tensor Conv(Tensor x, string prefix) => x.matmul(r.P(prefix + ".weight")) + r.P(prefix + ".bias");
        Tensor GeluNew(Tensor x) => 0.5 * x * (1 + torch.tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x.pow(3))));
        var wte = r.P("transformer.wte.weight");
        var h = torch.cat(new[] { VitPooled(r, pixels, config.Vision).unsqueeze(1), wte.index_select(0, ids.flatten()).view(2, 4, -1) }, 1)
            + r.P("transformer.wpe.weight")[..5];
        var allowed = torch.cat(new[] { torch.ones(2, 1, dtype: ScalarType.Int64), mask }, 1);
        var additive = ReferenceOps.Causal(5).unsqueeze(0).unsqueeze(0) + ReferenceOps.PadMask(allowed);
        for (int i = 0; i < t.NLayer; i++)
        {
            string l = $"transformer.h.{i}.";
            var qkv = Conv(r.LN(h, l + "ln_1", t.LayerNormEpsilon), l + "attn.c_attn").chunk(3, -1);
            var ctx = ReferenceOps.Attend(ReferenceOps.Heads(qkv[0], t.NHead), ReferenceOps.Heads(qkv[1], t.NHead), ReferenceOps.Heads(qkv[2], t.NHead),
                1 / Math.Sqrt(t.NEmbd / t.NHead), additive);
            h = h + Conv(ReferenceOps.Merge(ctx), l + "attn.c_proj");
            h = h + Conv(GeluNew(Conv(r.LN(h, l + "ln_2", t.LayerNormEpsilon), l + "mlp.c_fc")), l + "mlp.c_proj");
        }
        var logits = r.LN(h, "transformer.ln_f", t.LayerNormEpsilon).matmul(wte.t());

        var output = model.call(new VisionLanguageInputs(pixels, ids, mask));
        // Padded positions see only masked keys beyond themselves; compare the real ones (row 0 position 4 is padding).
        TensorAssert.Close(logits[.., ..4], output.Logits[.., ..4], 1e-8);
        TensorAssert.Close(logits[1], output.Logits[1], 1e-8);
    }

    [Fact]
    public void Soft_score_loss_is_bce_summed_over_answers_and_averaged_over_the_batch()
    {
        // Per answer: log(1 + e^z) − y·z.
        using var logits = torch.tensor(new float[] { 0, 2, -1, 1, 0, 3 }).view(2, 3);
        using var scores = torch.tensor(new float[] { 1, 0.3f, 0, 0, 0.6f, 1 }).view(2, 3);
        double Bce(double z, double y) => Math.Log(1 + Math.Exp(z)) - y * z;
        double expected = (Bce(0, 1) + Bce(2, 0.3) + Bce(-1, 0) + Bce(1, 0) + Bce(0, 0.6) + Bce(3, 1)) / 2;
        Assert.Equal(expected, VitRobertaForVqa.SoftScoreLoss(logits, scores).item<float>(), 5);
    }

    [Fact]
    public void Classifier_head_is_linear_layernorm_gelu_linear_and_trains_on_soft_scores()
    {
        torch.manual_seed(23);
        var config = VitRobertaVqaConfig.Parse(ModelPresets.Json("tiny-vit-roberta-vqa"), "preset") with { Id2Label = new[] { "yes", "no", "2" } };
        using var model = new VitRobertaForVqa(config);
        var shapes = model.named_parameters().Where(p => p.name.StartsWith("classifier.")).ToDictionary(p => p.name, p => p.parameter.shape);
        long d = config.Text.HiddenSize;
        Assert.Equal(new[] { 2 * d, d }, shapes["classifier.0.weight"]);
        Assert.Equal(new[] { 2 * d }, shapes["classifier.1.weight"]);
        Assert.Equal(new[] { 3L, 2 * d }, shapes["classifier.3.weight"]);
        using var scores = torch.tensor(new float[] { 1, 0, 0, 0, 0.3f, 0.6f }).view(2, 3);
        var inputs = new VisionLanguageInputs(torch.randn(2, 3, 48, 48), torch.tensor(new long[] { 5, 6, 7, 8 }).view(2, 2), torch.ones(2, 2, dtype: ScalarType.Int64), Labels: scores);
        var output = model.call(inputs);
        Assert.Equal(VitRobertaForVqa.SoftScoreLoss(output.Logits, scores).item<float>(), output.Loss!.item<float>(), 5);
        var bad = inputs with { Labels = torch.tensor(new float[] { 1, 2, 0, 0, 0, 0 }).view(2, 3) };
        Assert.Contains("soft answer scores", Assert.Throws<BadInputException>(() => model.CheckInputs(bad)).Message);
    }

    [Theory]
    // Hugging Face's numbers: ViTModel (in21k, with pooler) 86,389,248; RobertaModel roberta-base 124,645,632; GPT2Model gpt2 124,439,808.
    [InlineData("vit-roberta-base-vqa", "vit", 86_389_248)]
    [InlineData("vit-roberta-base-vqa", "roberta", 124_645_632)]
    [InlineData("vit-gpt2-captioning", "transformer", 124_439_808)]
    // gpt2-medium GPT2Model: 354,823,168; roberta-large RobertaModel: 355,359,744.
    [InlineData("vit-gpt2-medium-captioning", "transformer", 354_823_168)]
    [InlineData("vit-roberta-large-vqa", "roberta", 355_359_744)]
    public void Preset_towers_have_the_hugging_face_parameter_counts(string preset, string component, long expected)
    {
        var summary = ModelParameterSummary.Compute(preset, "full", 8, out _);
        Assert.Equal(expected, summary.Components.Single(c => c.Name == component).Total);
    }

    [Fact]
    public void Vqa_classifier_head_count_is_the_formula()
    {
        // 768·1536 + 1536 + 2·1536 + 1536·3129 + 3129.
        var summary = ModelParameterSummary.Compute("vit-roberta-base-vqa", "roberta-lora", 8, out _);
        Assert.Equal(768L * 1536 + 1536 + 2 * 1536 + 1536L * 3129 + 3129, summary.Components.Single(c => c.Name == "classifier").Total);
        // LoRA r = 8 on q and v of 12 layers: 12·2·8·(768 + 768), plus the q and v biases.
        Assert.Equal(12L * 2 * 8 * 1536 + 12 * 2 * 768 + summary.Components.Single(c => c.Name == "classifier").Total, summary.Trainable);
    }
}
