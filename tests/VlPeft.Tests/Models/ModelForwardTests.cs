using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Language;
using VlPeft.Models.Multimodal;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Models;

/// <summary>Each model's forward against a reference computed from raw ops in the test (float64, eval mode).</summary>
public class ModelForwardTests
{
    static BlipForConditionalGeneration Build(string preset, int seed)
    {
        torch.manual_seed(seed);
        var model = new BlipForConditionalGeneration(ModelPresets.Get(preset));
        model.to(ScalarType.Float64);
        // Non-trivial values everywhere (zeros/ones from init would hide mistakes).
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters()) p.copy_(torch.randn_like(p) * 0.2 + (p.dim() == 1 ? 1.0 : 0.0));
        model.eval();
        return model;
    }

    static Tensor Pixels(long b = 2) => torch.randn(b, 3, 32, 32, dtype: ScalarType.Float64);

    Tensor VisionReference(ReferenceOps r, Tensor pixels, VisionConfig c)
    {
        const string V = "vision_model.";
        var h = torch.nn.functional.conv2d(pixels, r.P(V + "embeddings.patch_embedding.weight"), r.P(V + "embeddings.patch_embedding.bias"), strides: new long[] { c.PatchSize, c.PatchSize });
        h = h.flatten(2).transpose(1, 2);
        h = torch.cat(new[] { r.P(V + "embeddings.class_embedding").expand(h.shape[0], 1, -1), h }, 1) + r.P(V + "embeddings.position_embedding");
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string l = $"{V}encoder.layers.{i}.";
            var x = r.LN(h, l + "layer_norm1", c.LayerNormEps);
            var qkv = r.Lin(x, l + "self_attn.qkv").view(h.shape[0], h.shape[1], 3, c.NumAttentionHeads, -1).permute(2, 0, 3, 1, 4);
            h = h + r.Lin(ReferenceOps.Merge(ReferenceOps.Attend(qkv[0], qkv[1], qkv[2], 1 / Math.Sqrt(qkv.shape[^1]))), l + "self_attn.projection");
            x = r.LN(h, l + "layer_norm2", c.LayerNormEps);
            h = h + r.Lin(ReferenceOps.Gelu(r.Lin(x, l + "mlp.fc1")), l + "mlp.fc2");
        }
        return r.LN(h, V + "post_layernorm", c.LayerNormEps);
    }

    Tensor QFormerReference(ReferenceOps r, Tensor image, Tensor ids, Tensor mask, MultimodalConfig c)
    {
        var q = c.QFormer;
        long nq = c.NumQueryTokens, b = image.shape[0];
        var text = r.P("qformer.embeddings.word_embeddings.weight").index_select(0, ids.flatten()).view(b, ids.shape[1], -1)
            + r.P("qformer.embeddings.position_embeddings.weight")[..(int)ids.shape[1]];
        var x = r.LN(torch.cat(new[] { r.P("query_tokens").expand(b, -1, -1), text }, 1), "qformer.embeddings.layernorm", q.LayerNormEps);
        var additive = ReferenceOps.PadMask(torch.cat(new[] { torch.ones(b, nq, dtype: ScalarType.Int64), mask }, 1));
        double scale = 1 / Math.Sqrt(q.HiddenSize / q.NumAttentionHeads);
        for (int i = 0; i < q.NumHiddenLayers; i++)
        {
            string l = $"qformer.encoder.layer.{i}.";
            Tensor Mha(Tensor hq, Tensor mem, string a, Tensor? m) => ReferenceOps.Merge(ReferenceOps.Attend(
                ReferenceOps.Heads(r.Lin(hq, a + ".attention.query"), q.NumAttentionHeads),
                ReferenceOps.Heads(r.Lin(mem, a + ".attention.key"), q.NumAttentionHeads),
                ReferenceOps.Heads(r.Lin(mem, a + ".attention.value"), q.NumAttentionHeads), scale, m));
            var attn = r.LN(r.Lin(Mha(x, x, l + "attention", additive), l + "attention.output.dense") + x, l + "attention.output.LayerNorm", q.LayerNormEps);
            var query = attn[.., ..(int)nq];
            if (i % q.CrossAttentionFrequency == 0)
                query = r.LN(r.Lin(Mha(query, image, l + "crossattention", null), l + "crossattention.output.dense") + query, l + "crossattention.output.LayerNorm", q.LayerNormEps);
            var qf = r.LN(r.Lin(ReferenceOps.Gelu(r.Lin(query, l + "intermediate_query.dense")), l + "output_query.dense") + query, l + "output_query.LayerNorm", q.LayerNormEps);
            var t = attn[.., (int)nq..];
            var tf = r.LN(r.Lin(ReferenceOps.Gelu(r.Lin(t, l + "intermediate.dense")), l + "output.dense") + t, l + "output.LayerNorm", q.LayerNormEps);
            x = torch.cat(new[] { qf, tf }, 1);
        }
        return x[.., ..(int)nq];
    }

    Tensor T5StackReference(ReferenceOps r, Tensor h, Tensor mask, TextConfig c, bool decoder, Tensor? memory, Tensor? memoryMask)
    {
        string s = decoder ? "language_model.decoder." : "language_model.encoder.";
        long t = h.shape[1];
        var bias = torch.zeros(c.NumHeads, t, t, dtype: ScalarType.Float64);
        var table = r.P(s + "block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        for (int i = 0; i < t; i++)
            for (int j = 0; j < t; j++)
                bias[.., i, j] = table[ReferenceOps.Bucket(j - i, !decoder, c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance)];
        var selfMask = bias.unsqueeze(0) + ReferenceOps.PadMask(mask) + (decoder ? ReferenceOps.Causal(t) : torch.zeros(1, dtype: ScalarType.Float64));
        Tensor Mha(Tensor hq, Tensor mem, string a, Tensor m) => r.Lin(ReferenceOps.Merge(ReferenceOps.Attend(
            ReferenceOps.Heads(r.Lin(hq, a + ".q"), c.NumHeads), ReferenceOps.Heads(r.Lin(mem, a + ".k"), c.NumHeads),
            ReferenceOps.Heads(r.Lin(mem, a + ".v"), c.NumHeads), 1.0, m)), a + ".o");
        int layers = decoder ? c.NumDecoderLayers ?? c.NumLayers : c.NumLayers;
        for (int i = 0; i < layers; i++)
        {
            string b = $"{s}block.{i}.layer.";
            var x = r.Rms(h, b + "0.layer_norm", c.LayerNormEpsilon);
            h = h + Mha(x, x, b + "0.SelfAttention", selfMask);
            int ff = 1;
            if (decoder)
            {
                x = r.Rms(h, b + "1.layer_norm", c.LayerNormEpsilon);
                h = h + Mha(x, memory!, b + "1.EncDecAttention", ReferenceOps.PadMask(memoryMask!));
                ff = 2;
            }
            x = r.Rms(h, $"{b}{ff}.layer_norm", c.LayerNormEpsilon);
            var gated = ReferenceOps.Gelu(r.Lin(x, $"{b}{ff}.DenseReluDense.wi_0")) * r.Lin(x, $"{b}{ff}.DenseReluDense.wi_1");
            h = h + r.Lin(gated, $"{b}{ff}.DenseReluDense.wo");
        }
        return r.Rms(h, s + "final_layer_norm", c.LayerNormEpsilon);
    }

    [Fact]
    public void Instructblip_t5_matches_the_raw_op_reference_at_every_stage()
    {
        using var model = Build("tiny-instructblip-t5", 40);
        var c = model.Config;
        var r = new ReferenceOps(model);
        using var pixels = Pixels();
        var qIds = torch.tensor(new long[] { 5, 9, 3, 0, 7, 2, 11, 4 }).view(2, 4);
        var qMask = torch.tensor(new long[] { 1, 1, 1, 0, 1, 1, 1, 1 }).view(2, 4);
        var ids = torch.tensor(new long[] { 10, 20, 30, 1, 40, 50, 0, 0 }).view(2, 4);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 0, 0 }).view(2, 4);
        var labels = torch.tensor(new long[] { 7, 8, 1, 9, 1, -100 }).view(2, 3);
        var output = model.call(new VisionLanguageInputs(pixels, ids, mask, qIds, qMask, Labels: labels));

        var image = VisionReference(r, pixels, c.Vision);
        TensorAssert.Close(image, output.Intermediates["vision_last_hidden_state"], 1e-9);
        var query = QFormerReference(r, image, qIds, qMask, c);
        TensorAssert.Close(query, output.Intermediates["qformer_query_output"], 1e-9);
        var projected = r.Lin(query, "language_projection");
        TensorAssert.Close(projected, output.VisualTokens, 1e-9);

        // T5: [projected queries; prompt] into the encoder; labels shifted right with start 0, −100 → pad.
        var encIn = torch.cat(new[] { projected, r.P("language_model.shared.weight").index_select(0, ids.flatten()).view(2, 4, -1) }, 1);
        var encMask = torch.cat(new[] { torch.ones(2, c.NumQueryTokens, dtype: ScalarType.Int64), mask }, 1);
        var memory = T5StackReference(r, encIn, encMask, c.Text, false, null, null);
        var decIds = torch.tensor(new long[] { 0, 7, 8, 0, 9, 1 }).view(2, 3);
        var decIn = r.P("language_model.shared.weight").index_select(0, decIds.flatten()).view(2, 3, -1);
        var dec = T5StackReference(r, decIn, torch.ones(2, 3, dtype: ScalarType.Int64), c.Text, true, memory, encMask);
        var logits = r.Lin(dec, "language_model.lm_head");
        TensorAssert.Close(logits, output.Logits, 1e-5); // RMS norms run in fp32 (HF), so fp32 rounding shows here

        var logProbs = logits.log_softmax(-1);
        double nll = -(logProbs[0, 0, 7] + logProbs[0, 1, 8] + logProbs[0, 2, 1] + logProbs[1, 0, 9] + logProbs[1, 1, 1]).item<double>() / 5;
        Assert.Equal(nll, output.Loss!.item<float>(), 4);
    }

    [Fact]
    public void Instructblip_llama_matches_the_reference_with_rope_and_the_shifted_text_loss()
    {
        using var model = Build("tiny-instructblip-vicuna", 41);
        var c = model.Config;
        var t = c.Text;
        var r = new ReferenceOps(model);
        using var pixels = Pixels(1);
        var qIds = torch.tensor(new long[] { 5, 9, 3 }).view(1, 3);
        var ids = torch.tensor(new long[] { 1, 20, 30, 40, 2 }).view(1, 5);
        var labels = torch.tensor(new long[] { -100, -100, 30, 40, 2 }).view(1, 5);
        var output = model.call(new VisionLanguageInputs(pixels, ids, null, qIds, null, Labels: labels));

        var projected = output.VisualTokens;
        var h = torch.cat(new[] { projected, r.P("language_model.model.embed_tokens.weight").index_select(0, ids.flatten()).unsqueeze(0) }, 1);
        var logits = r.LlamaLogits(h, ReferenceOps.Causal(h.shape[1]), t);
        TensorAssert.Close(logits, output.Logits, 1e-5); // fp32 RMS norms, as above
        // Labels cover the text; position q + k predicts text token k + 1.
        var lp = logits.log_softmax(-1);
        long nq = c.NumQueryTokens;
        double nll = -(lp[0, nq + 1, 30] + lp[0, nq + 2, 40] + lp[0, nq + 3, 2]).item<double>() / 3;
        Assert.Equal(nll, output.Loss!.item<float>(), 4);
    }

    [Fact]
    public void Blip2_opt_matches_the_reference_with_offset_positions_and_padding()
    {
        using var model = Build("tiny-blip2-opt", 42);
        var c = model.Config;
        var t = c.Text;
        var r = new ReferenceOps(model);
        using var pixels = Pixels();
        var ids = torch.tensor(new long[] { 2, 20, 30, 2, 40, 1 }).view(2, 3);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 0 }).view(2, 3);
        var output = model.call(new VisionLanguageInputs(pixels, ids, mask));

        // BLIP-2 Q-Former: queries only, normed by qformer.layernorm (checked through the projection).
        var image = VisionReference(r, pixels, c.Vision);
        var x = r.LN(r.P("query_tokens").expand(2, -1, -1), "qformer.layernorm", c.QFormer.LayerNormEps);
        Assert.False(r.Has("qformer.embeddings.word_embeddings.weight"));
        Assert.False(r.Has("qformer.encoder.layer.0.intermediate.dense.weight"));
        var table = r.P("language_model.model.decoder.embed_tokens.weight");
        var h = torch.cat(new[] { output.VisualTokens, table.index_select(0, ids.flatten()).view(2, 3, -1) }, 1);
        var full = torch.cat(new[] { torch.ones(2, c.NumQueryTokens, dtype: ScalarType.Int64), mask }, 1);
        var positions = (full.cumsum(1) * full - 1) + 2;
        h = h + r.P("language_model.model.decoder.embed_positions.weight").index_select(0, positions.flatten()).view(h.shape);
        long len = h.shape[1], heads = t.NumAttentionHeads;
        var m = ReferenceOps.Causal(len) + ReferenceOps.PadMask(full);
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            string l = $"language_model.model.decoder.layers.{i}.";
            var a = r.LN(h, l + "self_attn_layer_norm", 1e-5);
            var ctx = ReferenceOps.Attend(ReferenceOps.Heads(r.Lin(a, l + "self_attn.q_proj"), heads), ReferenceOps.Heads(r.Lin(a, l + "self_attn.k_proj"), heads),
                ReferenceOps.Heads(r.Lin(a, l + "self_attn.v_proj"), heads), 1 / Math.Sqrt(t.HiddenSize / heads), m);
            h = h + r.Lin(ReferenceOps.Merge(ctx), l + "self_attn.out_proj");
            h = h + r.Lin(r.Lin(r.LN(h, l + "final_layer_norm", 1e-5), l + "fc1").relu(), l + "fc2");
        }
        var logits = r.LN(h, "language_model.model.decoder.final_layer_norm", 1e-5).matmul(table.t());
        // The padded position's row is irrelevant; compare the rows the mask keeps.
        TensorAssert.Close(logits[0], output.Logits[0], 1e-8);
        TensorAssert.Close(logits[1, ..^1], output.Logits[1, ..^1], 1e-8);
        Assert.Equal(new long[] { 2, c.NumQueryTokens, c.QFormer.HiddenSize }, output.Intermediates["qformer_query_output"].shape);
        Assert.Equal(x.shape, output.Intermediates["qformer_query_output"].shape);
    }

    [Theory]
    [InlineData(0, true, 0)]
    [InlineData(1, true, 17)]     // bidirectional: n = 16, δ > 0 adds 16; 1 < 8 exact
    [InlineData(-1, true, 1)]
    [InlineData(-7, true, 7)]
    [InlineData(-8, true, 8)]     // 8 + ⌊ln(1)/ln(16)·8⌋ = 8
    [InlineData(-20, true, 10)]   // 8 + ⌊ln(2.5)/ln(16)·8⌋ = 8 + ⌊2.644⌋
    [InlineData(-127, true, 15)]  // 8 + ⌊ln(15.875)/ln(16)·8⌋ = 8 + ⌊7.978⌋
    [InlineData(-500, true, 15)]  // capped at n − 1
    [InlineData(300, true, 31)]
    [InlineData(5, false, 0)]     // causal: future positions clamp to 0
    [InlineData(-5, false, 5)]
    [InlineData(-16, false, 16)]  // n = 32, max_exact 16: 16 + ⌊ln(1)…⌋
    [InlineData(-100, false, 30)] // 16 + ⌊ln(6.25)/ln(8)·16⌋ = 16 + ⌊14.10⌋
    public void T5_buckets_match_the_formula_by_hand(long delta, bool bidirectional, long expected)
    {
        Assert.Equal(expected, ReferenceOps.Bucket(delta, bidirectional, 32, 128));
        using var rel = torch.tensor(new[] { delta });
        Assert.Equal(expected, T5Model.RelativePositionBucket(rel, bidirectional, 32, 128).item<long>());
    }

    [Fact]
    public void Rope_rotates_pairs_by_position_times_frequency()
    {
        // head_dim 4, θ = 10000: frequencies 1 and 0.01; at position 2 the angles are 2 and 0.02.
        var (cos, sin) = LlamaModel.Rotary(3, 4, 10000);
        using var x = torch.tensor(new double[] { 1, 2, 3, 4 }).view(1, 1, 1, 4).expand(1, 1, 3, 4).clone();
        var y = LlamaModel.ApplyRotary(x, cos.to(ScalarType.Float64), sin.to(ScalarType.Float64));
        double a0 = 2, a1 = 0.02;
        var expected = new[] { 1 * Math.Cos(a0) - 3 * Math.Sin(a0), 2 * Math.Cos(a1) - 4 * Math.Sin(a1), 3 * Math.Cos(a0) + 1 * Math.Sin(a0), 4 * Math.Cos(a1) + 2 * Math.Sin(a1) };
        TensorAssert.Close(torch.tensor(expected), y[0, 0, 2], 1e-6);
        TensorAssert.Close(x[0, 0, 0], y[0, 0, 0], 1e-12); // position 0 is not rotated
    }
}
