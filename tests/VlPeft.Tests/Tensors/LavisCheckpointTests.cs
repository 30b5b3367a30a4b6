using System.Text.RegularExpressions;
using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Loading;
using VlPeft.Tests.Cli;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Tensors;

/// <summary><c>convert lavis</c>: LAVIS-named .pth files (written here from HF names by the inverse rules, by hand) back to HF names.</summary>
public class LavisCheckpointTests
{
    /// <summary>HF name → LAVIS name(s), written from LAVIS's module layout; qkv.bias splits into q_bias and v_bias.</summary>
    static IEnumerable<(string Name, Tensor Value)> ToLavis(string hf, Tensor value)
    {
        var m = Regex.Match(hf, @"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.bias$");
        if (m.Success)
        {
            long third = value.shape[0] / 3;
            yield return ($"visual_encoder.blocks.{m.Groups[1].Value}.attn.q_bias", value[..(int)third]);
            yield return ($"visual_encoder.blocks.{m.Groups[1].Value}.attn.v_bias", value[(int)(2 * third)..]);
            yield break;
        }
        string name = hf
            .Replace("vision_model.embeddings.class_embedding", "visual_encoder.cls_token")
            .Replace("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed")
            .Replace("vision_model.embeddings.patch_embedding.", "visual_encoder.patch_embed.proj.")
            .Replace("vision_model.post_layernorm.", "ln_vision.")
            .Replace("qformer.embeddings.layernorm.", "Qformer.bert.embeddings.LayerNorm.")
            .Replace("language_projection.", "t5_proj.");
        name = Regex.Replace(name, @"^vision_model\.encoder\.layers\.(\d+)\.layer_norm(\d)\.", "visual_encoder.blocks.$1.norm$2.");
        name = Regex.Replace(name, @"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.", "visual_encoder.blocks.$1.attn.qkv.");
        name = Regex.Replace(name, @"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.projection\.", "visual_encoder.blocks.$1.attn.proj.");
        name = Regex.Replace(name, @"^vision_model\.encoder\.layers\.(\d+)\.mlp\.", "visual_encoder.blocks.$1.mlp.");
        name = Regex.Replace(name, @"^qformer\.encoder\.layer\.(\d+)\.(attention|crossattention)\.attention\.", "Qformer.bert.encoder.layer.$1.$2.self.");
        name = Regex.Replace(name, @"^qformer\.", "Qformer.bert.");
        name = Regex.Replace(name, @"^language_model\.", "t5_model.");
        yield return (name, value);
    }

    static (VisionLanguageModel Model, List<(string Name, Tensor Value)> Lavis) Source(int seed)
    {
        torch.manual_seed(seed);
        var model = ModelFamilies.FromPreset("tiny-instructblip-t5");
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.EndsWith("self_attn.qkv.bias")))
                p.narrow(0, p.shape[0] / 3, p.shape[0] / 3).zero_();   // EVA has no k bias
        var lavis = model.named_parameters().SelectMany(p => ToLavis(p.name, p.parameter.detach())).ToList();
        return (model, lavis);
    }

    static void Save(string path, IEnumerable<(string Name, Tensor Value)> state)
    {
        var writer = new TorchSaveWriter();
        var model = writer.AddStateDict(state);
        writer.AddStorage("opt", torch.ones(3));
        writer.Write(path, new Dictionary<string, object>
        {
            ["model"] = model, ["epoch"] = 4,
            ["optimizer"] = new Dictionary<string, object> { ["exp_avg"] = new TorchSaveWriter.View("opt", 0, new long[] { 3 }, new long[] { 1 }) },
        });
    }

    [Fact]
    public void A_full_lavis_checkpoint_converts_to_the_hf_model_exactly()
    {
        using var dir = new TempDirectory();
        var (source, lavis) = Source(51);
        using var _ = source;
        Assert.Contains(lavis, t => t.Name == "visual_encoder.blocks.0.attn.q_bias");
        Assert.Contains(lavis, t => t.Name == "Qformer.bert.encoder.layer.0.crossattention.self.key.weight");
        lavis.Add(("Qformer.cls.predictions.bias", torch.zeros(5)));   // the Q-Former's MLM head: not part of the model
        Save(dir.File("lavis.pth"), lavis);

        var run = CliRunner.Run("convert", "lavis", "--checkpoint", dir.File("lavis.pth"), "--preset", "tiny-instructblip-t5", "--out", dir.File("hf"));
        Assert.True(run.ExitCode == 0, run.Err);
        using var converted = VlPeft.Models.Loading.PretrainedModel.Load(dir.File("hf"));
        var got = converted.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in source.named_parameters()) TensorAssert.Close(p, got[name], 0);
    }

    [Fact]
    public void A_fine_tuned_lavis_checkpoint_needs_and_is_laid_over_an_hf_base()
    {
        using var dir = new TempDirectory();
        var (trained, lavis) = Source(52);
        using var _ = trained;
        // InstructBLIP_PEFT / LAVIS save only what trained: here the Q-Former, the queries and the projection.
        Save(dir.File("ft.pth"), lavis.Where(t => t.Name.StartsWith("Qformer.") || t.Name is "query_tokens" || t.Name.StartsWith("t5_proj.")));
        torch.manual_seed(53);
        using (var base_ = ModelFamilies.FromPreset("tiny-instructblip-t5")) PretrainedModel.Save(base_, dir.File("base"));
        File.WriteAllText(dir.File("base/vocab.txt"), "x");

        var error = Assert.Throws<BadInputException>(() => LavisCheckpoint.Convert(dir.File("ft.pth"), null, "tiny-instructblip-t5", dir.File("out1")));
        Assert.Contains("--base", error.Message);

        var (taken, total) = LavisCheckpoint.Convert(dir.File("ft.pth"), dir.File("base"), null, dir.File("out2"));
        Assert.True(taken < total);
        using var merged = PretrainedModel.Load(dir.File("out2"));
        using var base2 = PretrainedModel.Load(dir.File("base"));
        var got = merged.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var fromBase = base2.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in trained.named_parameters())
        {
            bool fromCheckpoint = name.StartsWith("qformer.") || name is "query_tokens" || name.StartsWith("language_projection.");
            TensorAssert.Close(fromCheckpoint ? p : fromBase[name], got[name], 0);
        }
        Assert.True(File.Exists(dir.File("out2/vocab.txt")));
    }
}
