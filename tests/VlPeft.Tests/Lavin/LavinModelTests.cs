using TorchSharp;
using VlPeft.Analysis;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Peft;
using VlPeft.Tests.Models;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Lavin;

public class LavinModelTests
{
    const string V = "vision_model.";

    static LavinForConditionalGeneration Build(int seed, ScalarType dtype = ScalarType.Float64)
    {
        torch.manual_seed(seed);
        var model = (LavinForConditionalGeneration)ModelFamilies.FromPreset("tiny-lavin");
        model.to(dtype);
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters()) p.copy_(torch.randn_like(p) * 0.2 + (p.dim() == 1 ? 1.0 : 0.0));
        model.eval();
        return model;
    }

    static IReadOnlyList<Tensor> ClipReference(ReferenceOps r, Tensor pixels, VisionConfig c)
    {
        var h = torch.nn.functional.conv2d(pixels, r.P(V + "embeddings.patch_embedding.weight"), null, strides: new long[] { c.PatchSize, c.PatchSize });
        h = h.flatten(2).transpose(1, 2);
        h = torch.cat(new[] { r.P(V + "embeddings.class_embedding").view(1, 1, -1).expand(h.shape[0], 1, -1), h }, 1) + r.P(V + "embeddings.position_embedding.weight");
        h = r.LN(h, V + "pre_layrnorm", c.LayerNormEps);
        var states = new List<Tensor> { h };
        long heads = c.NumAttentionHeads;
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string l = $"{V}encoder.layers.{i}.";
            var x = r.LN(h, l + "layer_norm1", c.LayerNormEps);
            var ctx = ReferenceOps.Attend(ReferenceOps.Heads(r.Lin(x, l + "self_attn.q_proj"), heads), ReferenceOps.Heads(r.Lin(x, l + "self_attn.k_proj"), heads),
                ReferenceOps.Heads(r.Lin(x, l + "self_attn.v_proj"), heads), 1 / Math.Sqrt(c.HiddenSize / heads));
            h = h + r.Lin(ReferenceOps.Merge(ctx), l + "self_attn.out_proj");
            x = r.LN(h, l + "layer_norm2", c.LayerNormEps);
            var fc1 = r.Lin(x, l + "mlp.fc1");
            h = h + r.Lin(fc1 * (1.702 * fc1).sigmoid(), l + "mlp.fc2");                   // quick_gelu
            states.Add(h);
        }
        return states;
    }

    static Tensor Pixels(LavinForConditionalGeneration m, long b, ScalarType dtype = ScalarType.Float64) =>
        torch.randn(b, 3, m.Config.Vision.ImageSize, m.Config.Vision.ImageSize, dtype: dtype);

    /// <summary>Row 0 with an image (placeholder id 4 ×4 after "image :"), row 1 text only and padded.</summary>
    static VisionLanguageInputs TwoRows(Tensor pixels, bool labels = true)
    {
        var ids = torch.tensor(new long[] { 2, 10, 11, 4, 4, 4, 4, 20, 21, 30, 3, 2, 10, 11, 12, 20, 21, 30, 3, 0, 0, 0 }).view(2, 11);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }).view(2, 11);
        var label = torch.tensor(new long[] { -100, -100, -100, -100, -100, -100, -100, -100, -100, 30, 3, -100, -100, -100, -100, -100, 21, 30, 3, -100, -100, -100 }).view(2, 11);
        return new VisionLanguageInputs(pixels, ids, mask, Labels: labels ? label : null, ImageIndicators: torch.tensor(new long[] { 1, 0 }));
    }

    [Fact]
    public void Clip_tower_matches_the_raw_op_reference_at_every_block()
    {
        using var model = Build(51);
        var r = new ReferenceOps(model);
        var pixels = Pixels(model, 2);
        var expected = ClipReference(r, pixels, model.Config.Vision);
        var actual = model.VisionModel.call(pixels);
        Assert.Equal(model.Config.Vision.NumHiddenLayers + 1, actual.Count);
        for (int i = 0; i < expected.Count; i++) TensorAssert.Close(expected[i], actual[i], 1e-9);
    }

    [Fact]
    public void Lavin_forward_matches_the_reference_assembly_with_a_private_modality_token()
    {
        using var model = Build(52);
        var c = model.Config;
        var r = new ReferenceOps(model);
        var pixels = Pixels(model, 2);
        var input = TwoRows(pixels);
        var output = model.call(input);

        var states = ClipReference(r, pixels, c.Vision);
        var taps = torch.stack(c.VisionFeatureLayers.Select(l => states[l][.., 0]).ToArray(), 1);     // [B, 4, Dv]
        var a = r.Lin(taps, "adapter_proj.conv_A");
        var visual = r.Lin(a * a.sigmoid(), "adapter_proj.conv_B");                                    // SiLU neck
        TensorAssert.Close(visual, output.VisualTokens, 1e-9);
        var table = r.P("language_model.model.embed_tokens.weight");
        var text = table.index_select(0, input.InputIds.flatten()).view(2, 11, -1).clone();
        for (int k = 0; k < 4; k++) text[0, 3 + k] = visual[0, k];                                    // row 0's placeholders
        var modality = r.P("adapter_modality_embedding.weight");
        var h = torch.cat(new[] { torch.stack(new[] { modality[1], modality[0] }).unsqueeze(1), text }, 1);
        long t = h.shape[1];
        var mask = ReferenceOps.Causal(t);
        mask[1.., 0] = -1e9;                                                                            // nobody attends to the modality token
        var padding = ReferenceOps.PadMask(torch.cat(new[] { torch.ones(2, 1, dtype: ScalarType.Int64), input.AttentionMask! }, 1));
        var logits = r.LlamaLogits(h, mask.unsqueeze(0).unsqueeze(0) + padding, c.Text);
        TensorAssert.Close(logits[0], output.Logits[0], 1e-5);                                        // the rotary tables are fp32
        TensorAssert.Close(logits[1, ..9], output.Logits[1, ..9], 1e-5);                               // row 1's real tokens
        // Position 1 + k predicts token k + 1; the loss averages the labelled tokens of both rows.
        var lp = logits.log_softmax(-1);
        double nll = -(lp[0, 9, 30] + lp[0, 10, 3] + lp[1, 5, 21] + lp[1, 6, 30] + lp[1, 7, 3]).item<double>() / 5;
        Assert.Equal(nll, output.Loss!.item<float>(), 4);
    }

    [Fact]
    public void The_gated_neck_variant_is_conv_B_of_silu_conv_A_times_conv_C()
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(ModelPresets.Json("tiny-lavin"))!.AsObject();
        json["neck_activation"] = "swiglu";
        torch.manual_seed(60);
        using var model = new LavinForConditionalGeneration(LavinConfig.Parse(json.ToJsonString(), "test"));
        model.eval();
        var r = new ReferenceOps(model);
        var pixels = torch.randn(1, 3, 48, 48);
        var taps = torch.stack(model.Config.VisionFeatureLayers.Select(l => model.VisionModel.call(pixels)[l][.., 0]).ToArray(), 1);
        var a = r.Lin(taps, "adapter_proj.conv_A");
        var expected = r.Lin(a * a.sigmoid() * r.Lin(taps, "adapter_proj.conv_C"), "adapter_proj.conv_B");
        TensorAssert.Close(expected, model.EncodeImage(pixels).Visual, 1e-5);
    }

    [Fact]
    public void No_token_attends_to_the_modality_token()
    {
        using var model = Build(53);
        var input = TwoRows(Pixels(model, 2), labels: false);
        var before = model.call(input).Logits;
        using (torch.no_grad()) model.named_parameters().First(p => p.name == "adapter_modality_embedding.weight").parameter.add_(3.0);
        var after = model.call(input).Logits;
        TensorAssert.Close(before[.., 1..], after[.., 1..], 1e-10);
        Assert.True((before[.., 0] - after[.., 0]).abs().max().item<double>() > 1e-3);               // it does reach its own output
    }

    [Theory]
    [InlineData("bottleneck-adapter")]
    [InlineData("lavin-router")]
    public void Attaching_zero_initialised_adapters_leaves_the_output_unchanged(string preset)
    {
        using var model = Build(54);
        var input = TwoRows(Pixels(model, 2));
        var before = model.call(input).Logits;
        torch.manual_seed(1);
        var peft = LavinPeftPresets.Get(preset, model.Config).Apply(model)!;
        model.to(ScalarType.Float64);
        model.eval();
        Assert.NotEmpty(peft.Targets());
        TensorAssert.Close(before, model.call(input).Logits, 1e-10);
    }

    [Fact]
    public void Merged_bottleneck_adapters_give_the_unmerged_outputs_and_survive_a_save_and_reload()
    {
        using var model = Build(55, ScalarType.Float32);
        var plan = LavinPeftPresets.Get("bottleneck-adapter", model.Config);
        var peft = plan.Apply(model)!;
        using (torch.no_grad())
            foreach (var (_, p, _) in peft.AdapterParameterEntries("default")) p.copy_(torch.randn_like(p) * 0.1);
        model.eval();
        var input = TwoRows(Pixels(model, 2, ScalarType.Float32));
        var unmerged = model.call(input).Logits;
        Assert.Null(peft.Tuner().MergeRefusal);
        peft.MergeAndUnload(safe: true);
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains(".default."));       // adapters gone
        var merged = model.call(input).Logits;
        TensorAssert.Close(unmerged, merged, 1e-4);
        Assert.True(model.Config.Text.AttentionBias);                                                  // q, k, v took the adapter's shift
        Assert.False(model.Config.Text.MlpBias);                                                       // no LLM adapter before the FFN
        var names = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        for (int i = 0; i < model.Config.Text.NumHiddenLayers; i++)                                   // o_proj gets a zero bias, as attention_bias implies
            Assert.Equal(0, names[$"language_model.model.layers.{i}.self_attn.o_proj.bias"].abs().sum().item<float>());

        using var dir = new TempDirectory();
        PretrainedModel.Save(model, dir.Path);
        using var reloaded = PretrainedModel.Load(dir.Path);
        reloaded.eval();
        TensorAssert.Close(merged, reloaded.call(input).Logits, 1e-5);
    }

    [Fact]
    public void Merging_a_routed_adapter_is_refused_with_the_reason()
    {
        using var model = Build(56, ScalarType.Float32);
        var peft = LavinPeftPresets.Get("lavin-router", model.Config).Apply(model)!;
        var error = Assert.Throws<BadInputException>(() => peft.MergeAndUnload());
        Assert.Contains("router", error.Message);
    }

    [Fact]
    public void Cached_generation_with_routers_equals_a_full_forward_at_every_step()
    {
        using var model = Build(57, ScalarType.Float32);
        LavinPeftPresets.Get("lavin-router", model.Config).Apply(model);
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.Contains(".default.")))
                p.copy_(torch.randn_like(p) * 0.3);
        model.eval();
        using var _ = torch.no_grad();
        var pixels = Pixels(model, 1, ScalarType.Float32);
        long[] prompt = { 2, 10, 11, 4, 4, 4, 4, 20, 21 };
        var indicators = torch.tensor(new long[] { 1 });
        using var decoder = model.StartDecoding(new VisionLanguageInputs(pixels, torch.tensor(prompt).unsqueeze(0), ImageIndicators: indicators));
        var generated = new List<long>();
        foreach (long next in new long[] { 30, 31, 32, 33 })
        {
            var full = model.call(new VisionLanguageInputs(pixels, torch.tensor(prompt.Concat(generated).ToArray()).unsqueeze(0), ImageIndicators: indicators)).Logits[0, -1];
            TensorAssert.Close(full, decoder.NextLogits(generated), 1e-4);
            generated.Add(next);
        }
        Assert.Equal(DecodingPhase.Continue, model.Context.Phase);
        decoder.Dispose();
        Assert.Equal(DecodingPhase.None, model.Context.Phase);
    }

    [Fact]
    public void Inputs_with_the_wrong_number_of_image_placeholders_are_refused()
    {
        using var model = Build(58);
        var input = TwoRows(Pixels(model, 2));
        model.CheckInputs(input);
        var bad = input with { InputIds = input.InputIds.clone().index_put_(torch.tensor(7L), torch.tensor(0L), torch.tensor(3L)) };
        var error = Assert.Throws<BadInputException>(() => model.CheckInputs(bad));
        Assert.Contains("needs exactly 4", error.Message);
    }

    /// <summary>Parameter counts from the architecture formulas, independent of the modules.</summary>
    static (long Total, long Trainable) Expected(LavinConfig c, int adapterDim, int groups, bool router, bool vitFfnSites)
    {
        long d = c.Text.HiddenSize, dv = c.Vision.HiddenSize, vocab = c.Text.VocabSize, neck = c.NeckHiddenSize;
        long llama = 2 * vocab * d + c.Text.NumHiddenLayers * (4 * d * d + 3 * d * c.Text.IntermediateSize + 2 * d) + d;
        long patches = (c.Vision.ImageSize / c.Vision.PatchSize) * (c.Vision.ImageSize / c.Vision.PatchSize);
        long clip = 3 * c.Vision.PatchSize * c.Vision.PatchSize * dv + dv + (patches + 1) * dv + 4 * dv
            + c.Vision.NumHiddenLayers * (4 * (dv * dv + dv) + 2 * dv * c.Vision.IntermediateSize + c.Vision.IntermediateSize + dv + 4 * dv);
        long connector = dv * neck + neck + neck * d + d + 2 * d;
        long Adapter(long w) => w * adapterDim + adapterDim + (router ? 2 : 1) * (w * adapterDim / groups + w) + (router ? 2 * w + 2 : 0);
        long adapters = c.Text.NumHiddenLayers * Adapter(d) + c.Vision.NumHiddenLayers * (vitFfnSites ? 2 : 1) * Adapter(dv);
        return (llama + clip + connector + adapters, connector + adapters);
    }

    [Theory]
    [InlineData("lavin-7b", "lavin-router", 8, true, false, 3_781_296)]
    [InlineData("lavin-13b", "lavin-router", 8, true, false, 5_390_080)]
    [InlineData("bottleneck-adapter-7b", "bottleneck-adapter", 16, false, true, 5_174_656)]
    public void Preset_parameter_counts_match_the_formulas_and_lavins_published_counts(string preset, string peft, int dim, bool router, bool vitFfn, long trainable)
    {
        var summary = ModelParameterSummary.Compute(preset, peft, 8, out _);
        var expected = Expected(LavinConfig.Parse(ModelPresets.Json(preset), preset), dim, 2, router, vitFfn);
        Assert.Equal(expected.Total, summary.Total);
        Assert.Equal(expected.Trainable, summary.Trainable);
        Assert.Equal(trainable, summary.Trainable);
        if (preset == "lavin-7b") Assert.Equal(3.8, Math.Round(summary.Trainable / 1e6, 1));          // LaVIN's README: 3.8M
        if (preset == "lavin-13b") Assert.Equal(5.4, Math.Round(summary.Trainable / 1e6, 1));         // and 5.4M
    }

    [Fact]
    public void Meta_to_hf_permutation_round_trips_and_turns_interleaved_rope_into_rotate_half()
    {
        torch.manual_seed(59);
        long heads = 2, dHead = 8, dim = 16;
        var wq = torch.randn(heads * dHead, dim, dtype: ScalarType.Float64);
        var wk = torch.randn(heads * dHead, dim, dtype: ScalarType.Float64);
        TensorAssert.Close(wq, MetaLlamaFormat.ToMeta(MetaLlamaFormat.ToHf(wq, heads), heads), 0);
        var x = torch.randn(5, dim, dtype: ScalarType.Float64);

        // Meta: rotate interleaved pairs (2i, 2i+1) by pos·θ^(−2i/d) (a complex multiply), per head.
        Tensor MetaRope(Tensor q)
        {
            var y = q.clone();
            for (int pos = 0; pos < q.shape[0]; pos++)
                for (int h = 0; h < heads; h++)
                    for (int i = 0; i < dHead / 2; i++)
                    {
                        double angle = pos * Math.Pow(10000, -2.0 * i / dHead);
                        var a = q[pos, h * dHead + 2 * i];
                        var b = q[pos, h * dHead + 2 * i + 1];
                        y[pos, h * dHead + 2 * i] = a * Math.Cos(angle) - b * Math.Sin(angle);
                        y[pos, h * dHead + 2 * i + 1] = a * Math.Sin(angle) + b * Math.Cos(angle);
                    }
            return y;
        }
        Tensor Scores(Tensor q, Tensor k) => q.view(5, heads, dHead).transpose(0, 1).matmul(k.view(5, heads, dHead).transpose(0, 1).transpose(1, 2));
        var meta = Scores(MetaRope(x.matmul(wq.t())), MetaRope(x.matmul(wk.t())));
        var (cos, sin) = VlPeft.Models.Language.LlamaModel.Rotary(5, dHead, 10000);
        Tensor HfRope(Tensor q) => VlPeft.Models.Language.LlamaModel.ApplyRotary(q.view(1, 5, heads, dHead).transpose(1, 2), cos.to(ScalarType.Float64), sin.to(ScalarType.Float64))[0].transpose(0, 1).reshape(5, -1);
        var hf = Scores(HfRope(x.matmul(MetaLlamaFormat.ToHf(wq, heads).t())), HfRope(x.matmul(MetaLlamaFormat.ToHf(wk, heads).t())));
        TensorAssert.Close(meta, hf, 1e-5);                                                           // fp32 rotary tables
        Assert.Equal("model.layers.3.mlp.up_proj.weight", MetaLlamaFormat.HfName("layers.3.feed_forward.w3.weight"));
        Assert.True(MetaLlamaFormat.IsRotated("layers.0.attention.wk.weight"));
        Assert.Null(MetaLlamaFormat.HfName("rope.freqs"));
    }
}
