using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Peft;
using VlPeft.Tensors;
using VlPeft.Tests.Cli;
using VlPeft.Tests.Peft;
using VlPeft.Tests.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Tests.Lavin;

public class LavinConversionTests
{
    /// <summary>Writes a state dict in torch.save format, each tensor on its own storage.</summary>
    static void SaveTorch(string path, IReadOnlyDictionary<string, Tensor> tensors, string? nestUnder = null)
    {
        var writer = new TorchSaveWriter();
        var dict = new Dictionary<string, object>();
        int i = 0;
        foreach (var (name, t) in tensors)
        {
            string key = (i++).ToString();
            writer.AddStorage(key, t);
            var stride = Enumerable.Range(0, (int)t.dim()).Select(d => t.shape.Skip(d + 1).Aggregate(1L, (a, b) => a * b)).ToArray();
            dict[name] = new TorchSaveWriter.View(key, 0, t.shape, stride);
        }
        writer.Write(path, nestUnder is null ? dict : new Dictionary<string, object> { [nestUnder] = dict, ["epoch"] = 19 });
    }

    [Fact]
    public void Meta_llama_shards_join_along_metas_split_and_become_hf_names()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("meta"));
        File.WriteAllText(dir.File("meta/params.json"), "{\"dim\": 8, \"n_layers\": 1, \"n_heads\": 2, \"multiple_of\": 4, \"norm_eps\": 1e-05, \"vocab_size\": -1}");
        torch.manual_seed(61);
        var full = new Dictionary<string, Tensor>
        {
            ["tok_embeddings.weight"] = torch.randn(10, 8), ["norm.weight"] = torch.randn(8), ["output.weight"] = torch.randn(10, 8),
            ["layers.0.attention.wq.weight"] = torch.randn(8, 8), ["layers.0.attention.wk.weight"] = torch.randn(8, 8),
            ["layers.0.attention.wv.weight"] = torch.randn(8, 8), ["layers.0.attention.wo.weight"] = torch.randn(8, 8),
            ["layers.0.feed_forward.w1.weight"] = torch.randn(12, 8), ["layers.0.feed_forward.w3.weight"] = torch.randn(12, 8),
            ["layers.0.feed_forward.w2.weight"] = torch.randn(8, 12), ["layers.0.attention_norm.weight"] = torch.randn(8),
            ["layers.0.ffn_norm.weight"] = torch.randn(8), ["rope.freqs"] = torch.randn(2),
        };
        // Two model-parallel shards, split the way Meta's layers split them.
        int Split(string n) => n.Contains(".wo.") || n.Contains(".w2.") || n.StartsWith("tok_embeddings") ? 1 : 0;
        for (int s = 0; s < 2; s++)
            SaveTorch(dir.File($"meta/consolidated.0{s}.pth"), full.ToDictionary(kv => kv.Key, kv => kv.Value.dim() == 1 ? kv.Value : kv.Value.chunk(2, Split(kv.Key))[s].contiguous()));
        var run = CliRunner.Run("convert", "meta-llama", "--checkpoint", dir.File("meta"), "--out", dir.File("hf"));
        Assert.True(run.ExitCode == 0, run.Err);
        using var hf = TensorCheckpoint.Open(dir.File("hf"));
        TensorAssert.Close(full["tok_embeddings.weight"], hf.ReadTensor("model.embed_tokens.weight"), 0);
        TensorAssert.Close(full["layers.0.attention.wo.weight"], hf.ReadTensor("model.layers.0.self_attn.o_proj.weight"), 0);
        TensorAssert.Close(full["layers.0.feed_forward.w3.weight"], hf.ReadTensor("model.layers.0.mlp.up_proj.weight"), 0);
        // q: per head, Meta's rows (0, 1, 2, 3) = pairs (r0, r1), (r2, r3) become HF rows (0, 2, 1, 3).
        var q = hf.ReadTensor("model.layers.0.self_attn.q_proj.weight");
        var wq = full["layers.0.attention.wq.weight"];
        foreach (var (hfRow, metaRow) in new[] { (0, 0), (1, 2), (2, 1), (3, 3), (4, 4), (5, 6), (6, 5), (7, 7) })
            TensorAssert.Close(wq[metaRow], q[hfRow], 0);
        Assert.False(hf.Contains("rope.freqs"));
        var config = File.ReadAllText(dir.File("hf/config.json"));
        Assert.Contains("\"intermediate_size\": 12", config);
        Assert.Contains("\"vocab_size\": 10", config);
        Assert.Contains("\"rms_norm_eps\": 1E-05", config);
    }

    /// <summary>LaVIN's name for one of our adapter or connector tensors, written by hand from LaVIN's module tree.</summary>
    static string LavinName(string ours) => ours
        .Replace("language_model.model.layers.", "layers.").Replace("vision_model.encoder.layers.", "backbone.visual.transformer.resblocks.")
        .Replace(".adapter_before_attention.default.", ".adapter_attn.").Replace(".adapter_before_ffn.default.", ".adapter_mlp.");

    [Fact]
    public void A_lavin_adapter_checkpoint_converts_and_reproduces_the_source_models_outputs()
    {
        using var dir = new TempDirectory();
        torch.manual_seed(62);
        using var source = (LavinForConditionalGeneration)ModelFamilies.FromPreset("tiny-lavin");
        PretrainedModel.Save(source, dir.File("base"));
        var peft = (LavinPeftPresets.Get("lavin-router", source.Config) with { }).Apply(source)!;
        using (torch.no_grad())
            foreach (var (_, p, _) in peft.AdapterParameterEntries("default")) p.copy_(torch.randn_like(p) * 0.2);
        var lavin = peft.AdapterParameterEntries("default").ToDictionary(e => LavinName(e.Name),
            e => e.Name.Contains(".conv_") && e.Name.EndsWith(".weight") ? e.Parameter.detach().unsqueeze(2) : e.Parameter.detach());   // Conv1d layout
        foreach (var (name, p) in source.named_parameters().Where(p => p.name.StartsWith("adapter_"))) lavin[name] = p.detach();
        SaveTorch(dir.File("checkpoint-19.pth"), lavin, nestUnder: "model");

        var run = CliRunner.Run("convert", "lavin-adapter", "--checkpoint", dir.File("checkpoint-19.pth"), "--out", dir.File("adapter"), "--clean-router");
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.Contains("dim 8, groups 2, router true", run.Out);
        using var target = PretrainedModel.Load(dir.File("base"));
        PeftFiles.Load(target, dir.File("adapter"));
        source.eval();
        target.eval();
        var pixels = torch.randn(1, 3, 48, 48);
        var input = new VisionLanguageInputs(pixels, torch.tensor(new long[] { 2, 10, 4, 4, 4, 4, 20, 21 }).unsqueeze(0), ImageIndicators: torch.tensor(new long[] { 1 }));
        using var _ = torch.no_grad();
        TensorAssert.Close(source.call(input).Logits, target.call(input).Logits, 1e-5);
    }

    [Fact]
    public void A_lavin_base_assembles_from_hf_llama_and_clip_directories()
    {
        using var dir = new TempDirectory();
        torch.manual_seed(63);
        using var reference = (LavinForConditionalGeneration)ModelFamilies.FromPreset("tiny-lavin");
        var all = reference.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter.detach());
        Directory.CreateDirectory(dir.File("llama"));
        Directory.CreateDirectory(dir.File("clip"));
        SafetensorsWriter.Write(dir.File("llama/model.safetensors"), all.Where(kv => kv.Key.StartsWith("language_model.")).ToDictionary(kv => kv.Key["language_model.".Length..], kv => kv.Value));
        File.WriteAllText(dir.File("llama/tokenizer.model"), "spm");
        var clip = all.Where(kv => kv.Key.StartsWith("vision_model.")).ToDictionary(kv => kv.Key, kv => kv.Value);
        clip["text_model.embeddings.token_embedding.weight"] = torch.zeros(3, 2);                 // a CLIPModel file: the text tower is dropped
        SafetensorsWriter.Write(dir.File("clip/model.safetensors"), clip);
        var run = CliRunner.Run("convert", "lavin-base", "--llama", dir.File("llama"), "--clip", dir.File("clip"), "--preset", "tiny-lavin", "--out", dir.File("base"));
        Assert.True(run.ExitCode == 0, run.Err);
        using var built = PretrainedModel.Load(dir.File("base"));
        var loaded = built.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var name in all.Keys.Where(k => !k.StartsWith("adapter_")))
            TensorAssert.Close(all[name], loaded[name], 0);
        Assert.True(File.Exists(dir.File("base/tokenizer.model")));

        File.Delete(dir.File("clip/model.safetensors"));
        SafetensorsWriter.Write(dir.File("clip/model.safetensors"), clip.Where(kv => !kv.Key.Contains("layers.3.")).ToDictionary(kv => kv.Key, kv => kv.Value));
        var missing = CliRunner.Run("convert", "lavin-base", "--llama", dir.File("llama"), "--clip", dir.File("clip"), "--preset", "tiny-lavin", "--out", dir.File("base2"));
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("vision_model.encoder.layers.3.", missing.Err);
    }
}
