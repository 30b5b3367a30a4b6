using System.Text.Json.Nodes;
using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Tensors;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Models;

public class CheckpointLoadingTests
{
    [Theory]
    [InlineData("instructblip-flan-t5-xl", "d_model", "hidden_size")]
    [InlineData("instructblip-vicuna-7b", "hidden_size", "d_model")]
    [InlineData("blip2-opt-2.7b", "ffn_dim", "d_model")]
    public void Written_text_config_holds_only_its_family_keys_and_reads_back_equal(string preset, string present, string absent)
    {
        var config = ModelPresets.Get(preset);
        var json = config.ToJson();
        var text = JsonNode.Parse(json)!["text_config"]!.AsObject();
        Assert.True(text.ContainsKey(present), present);
        Assert.False(text.ContainsKey(absent), absent);
        if (config.Text.ModelType == "t5")   // HF's T5Config would map these onto d_model, num_heads, num_layers
            Assert.DoesNotContain(text, p => p.Key is "num_attention_heads" or "num_hidden_layers" or "intermediate_size");
        Assert.Equal(config.Text, MultimodalConfig.Parse(json, "written").Text);
    }

    /// <summary>A HF-style checkpoint directory written key by key by the test (not via the model's save).</summary>
    static void WriteCheckpoint(string dir, BlipForConditionalGeneration model, Func<string, Tensor, (string, Tensor)?>? edit = null, bool aliases = true)
    {
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, p) in model.named_parameters())
        {
            var item = edit is null ? (name, (Tensor)p) : edit(name, p);
            if (item is { } kept) tensors[kept.Item1] = kept.Item2;
        }
        if (aliases && model.Config.Text.ModelType == "t5")
        {
            // HF files of T5 models may repeat the tied embedding under the stacks' names.
            tensors["language_model.encoder.embed_tokens.weight"] = tensors["language_model.shared.weight"];
            tensors["language_model.decoder.embed_tokens.weight"] = tensors["language_model.shared.weight"].clone();
        }
        tensors["qformer.embeddings.position_ids"] = torch.arange(64).unsqueeze(0); // a buffer some exports keep
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone()));
        File.WriteAllText(Path.Combine(dir, "config.json"), ModelPresets.Json(model.Config.IsInstructBlip ? "tiny-instructblip-t5" : "tiny-blip2-opt"));
    }

    [Fact]
    public void Strict_load_of_a_hf_style_directory_reproduces_the_outputs()
    {
        torch.manual_seed(50);
        using var source = new BlipForConditionalGeneration(ModelPresets.Get("tiny-instructblip-t5"));
        using (torch.no_grad()) foreach (var (_, p) in source.named_parameters()) p.add_(torch.randn_like(p) * 0.1);
        source.eval();
        var batch = TinyInputs.Batch(decoderOnly: false);
        using var expected = source.call(batch).Logits;

        using var dir = new TempDirectory();
        WriteCheckpoint(dir.Path, source);
        torch.manual_seed(99); // different init: everything must come from the file
        using var loaded = PretrainedModel.Load(dir.Path);
        loaded.eval();
        TensorAssert.Close(expected, loaded.call(batch).Logits, 1e-6);

        using var bf16 = PretrainedModel.Load(dir.Path, new PretrainedOptions { DType = ScalarType.BFloat16 });
        Assert.All(bf16.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        bf16.eval();
        var bfLogits = bf16.call(TinyInputs.Batch(false, ScalarType.BFloat16) with { PixelValues = batch.PixelValues.to(ScalarType.BFloat16) }).Logits;
        Assert.True((bfLogits.@float() - expected).abs().max().item<float>() < 0.5, "bf16 logits stay close to fp32");
    }

    [Fact]
    public void Missing_unexpected_and_misshaped_keys_are_clear_errors()
    {
        using var source = new BlipForConditionalGeneration(ModelPresets.Get("tiny-instructblip-t5"));
        using var dir = new TempDirectory();

        WriteCheckpoint(dir.Path, source, (n, p) => n == "qformer.encoder.layer.1.attention.attention.key.weight" ? null : (n, p));
        var missing = Assert.Throws<BadInputException>(() => PretrainedModel.Load(dir.Path));
        Assert.Contains("1 missing key(s): qformer.encoder.layer.1.attention.attention.key.weight", missing.Message);

        // With a dtype the layers and tables wait for the checkpoint unallocated: a missing table is as clear an error, and
        // a non-strict load refuses it too rather than keep a table without values.
        WriteCheckpoint(dir.Path, source, (n, p) => n == "qformer.embeddings.word_embeddings.weight" ? null : (n, p));
        var missingTable = Assert.Throws<BadInputException>(() => PretrainedModel.Load(dir.Path, new PretrainedOptions { DType = ScalarType.BFloat16 }));
        Assert.Contains("1 missing key(s): qformer.embeddings.word_embeddings.weight", missingTable.Message);
        var unfilled = Assert.Throws<BadInputException>(() => PretrainedModel.Load(dir.Path, new PretrainedOptions { DType = ScalarType.BFloat16, Strict = false }));
        Assert.Contains("checkpoint lacks 1 weight(s) that have no other source: qformer.embeddings.word_embeddings.weight", unfilled.Message);

        WriteCheckpoint(dir.Path, source, (n, p) => n == "query_tokens" ? ("query_token", p) : (n, p));
        var renamed = Assert.Throws<BadInputException>(() => PretrainedModel.Load(dir.Path));
        Assert.Contains("missing key(s): query_tokens", renamed.Message);
        Assert.Contains("unexpected key(s): query_token", renamed.Message);
        var config = ModelPresets.Get("tiny-instructblip-t5");
        var blip = new BlipForConditionalGeneration(config);
        var lenient = CheckpointLoader.Load(blip, dir.Path, strict: false, tiedAliases: new BlipFamily().TiedAliases(blip));
        Assert.Equal(new[] { "query_tokens" }, lenient.Missing);
        Assert.Equal(new[] { "query_token" }, lenient.Unexpected);

        WriteCheckpoint(dir.Path, source, (n, p) => n == "language_projection.weight" ? (n, p[.., ..16]) : (n, p));
        var shape = Assert.Throws<BadInputException>(() => PretrainedModel.Load(dir.Path));
        Assert.Contains("'language_projection.weight' has shape [32, 16] but the model expects [32, 32]", shape.Message);
        Assert.EndsWith("model.safetensors", shape.File);
    }

    [Fact]
    public void Skipping_towers_loads_the_rest_and_ignores_their_keys()
    {
        using var source = new BlipForConditionalGeneration(ModelPresets.Get("tiny-instructblip-t5"));
        using var dir = new TempDirectory();
        WriteCheckpoint(dir.Path, source);
        using var partial = PretrainedModel.Load(dir.Path, new PretrainedOptions { SkipVision = true, SkipLanguageModel = true });
        Assert.DoesNotContain(partial.named_parameters(), p => p.name.StartsWith("vision_model.") || p.name.StartsWith("language_model."));
        TensorAssert.Close(source.named_parameters().Single(p => p.name == "query_tokens").parameter,
            partial.named_parameters().Single(p => p.name == "query_tokens").parameter, 0);
    }

    [Fact]
    public void Sharded_checkpoints_load_and_bad_configs_are_named()
    {
        using var source = new BlipForConditionalGeneration(ModelPresets.Get("tiny-blip2-opt"));
        using var dir = new TempDirectory();
        var all = source.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter.detach().clone());
        var first = all.Where(kv => !kv.Key.StartsWith("language_model.")).ToDictionary(kv => kv.Key, kv => kv.Value);
        var second = all.Where(kv => kv.Key.StartsWith("language_model.")).ToDictionary(kv => kv.Key, kv => kv.Value);
        SafetensorsWriter.Write(dir.File("model-00001-of-00002.safetensors"), first);
        SafetensorsWriter.Write(dir.File("model-00002-of-00002.safetensors"), second);
        var map = new JsonObject();
        foreach (var k in first.Keys) map[k] = "model-00001-of-00002.safetensors";
        foreach (var k in second.Keys) map[k] = "model-00002-of-00002.safetensors";
        File.WriteAllText(dir.File("model.safetensors.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        File.WriteAllText(dir.File("config.json"), ModelPresets.Json("tiny-blip2-opt"));
        using var loaded = PretrainedModel.Load(dir.Path);
        Assert.Equal(all.Count, loaded.named_parameters().Count());

        File.WriteAllText(dir.File("config.json"), "{\"model_type\": \"llava\"}");
        Assert.Contains("model_type 'llava' is not supported", Assert.Throws<BadInputException>(() => PretrainedModel.Load(dir.Path)).Message);
        File.Delete(dir.File("config.json"));
        Assert.Contains("config.json not found", Assert.Throws<BadInputException>(() => PretrainedModel.Load(dir.Path)).Message);
    }
}
