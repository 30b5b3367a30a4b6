using TorchSharp;
using VlPeft.Experiments;
using VlPeft.Models;
using VlPeft.Models.Loading;
using VlPeft.Nn.Quantization;
using VlPeft.Peft;
using VlPeft.Peft.Lora;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Cli;

/// <summary>`vlpeft merge` over a quantized base: into the dequantized weights, re-quantization on request, --verify.</summary>
public class QuantizedMergeTests
{
    [Fact]
    public void Merge_over_an_nf4_base_adds_the_update_to_the_dequantized_weight_and_verify_refuses_requantization()
    {
        using var dir = new TempDirectory();
        string baseDir = RepoPath.Of("models", "tiny-instructblip");
        using var model = PretrainedModel.Load(baseDir);
        QuantizationPlan.Apply(model, QuantizationPlan.Parse("nf4", model, "test"));
        var peft = ModelFamilies.Of(model).PeftPreset("llm-lora-all", model, 2).Apply(model)!;
        torch.manual_seed(2);
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters().Where(p => p.name.Contains("lora_B"))) p.normal_(0, 0.3);
        PeftFiles.Save(peft, dir.File("adapter"));
        var (name, layer) = model.named_modules().Where(m => m.module is VlPeft.Nn.Linear { Adapters.Count: > 0, Quantized: not null })
            .Select(m => (m.name, (VlPeft.Nn.Linear)m.module)).First();
        var lora = (LoraAdapter)layer.Adapters[0];
        using var expected = layer.Quantized!.Dequantize(ScalarType.Float32) + lora.Scaling * lora.B.weight.matmul(lora.A.weight);

        var (code, output, error) = CliRunner.Run("merge", "--model", baseDir, "--adapter", dir.File("adapter"), "--quantize", "nf4", "--verify", "--out", dir.File("merged"));
        Assert.True(code == 0, error);
        Assert.Matches(@"verify: \|logits\(adapter \+ base\) − logits\(merged\)\| max [0-9.E-]+, mean", output);
        using (var merged = PretrainedModel.Load(dir.File("merged")))
        {
            var weight = merged.named_parameters().Single(p => p.name == name + ".weight").parameter;
            TensorAssert.Close(expected, weight, 1e-6);
        }

        // Re-quantizing the merged weights rounds them: --verify at the default tolerance refuses and writes nothing.
        (code, _, error) = CliRunner.Run("merge", "--model", baseDir, "--adapter", dir.File("adapter"), "--quantize", "nf4", "--requantize", "--verify", "--out", dir.File("requantized"));
        Assert.Equal(2, code);
        Assert.Contains("nothing was written", error);
        Assert.False(Directory.Exists(dir.File("requantized")));
        // Accepted with a wide tolerance: written in bitsandbytes' layout, read back as the quantized merged weight.
        (code, _, error) = CliRunner.Run("merge", "--model", baseDir, "--adapter", dir.File("adapter"), "--quantize", "nf4", "--requantize", "--tolerance", "1000", "--out", dir.File("requantized"));
        Assert.True(code == 0, error);
        Assert.Contains("quantized again", error);
        using var reloaded = PretrainedModel.Load(dir.File("requantized"));
        var reloadedLayer = (VlPeft.Nn.Linear)reloaded.named_modules().Single(m => m.name == name).module;
        using var requantized = Nf4Weight.Quantize(expected);
        TensorAssert.Close(requantized.Dequantize(ScalarType.Float32), reloadedLayer.Quantized!.Dequantize(ScalarType.Float32), 1e-6);
    }

    [Fact]
    public void Merge_over_a_base_with_a_quantized_token_table_writes_the_table_dequantized_and_verifies()
    {
        using var dir = new TempDirectory();
        string baseDir = RepoPath.Of("models", "tiny-lavin");
        using var model = PretrainedModel.Load(baseDir, new PretrainedOptions { Quantize = "nf4", QuantizeEmbeddings = true });
        var peft = ModelFamilies.Of(model).PeftPreset("llm-lora", model, 2).Apply(model)!;
        torch.manual_seed(3);
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters().Where(p => p.name.Contains("lora_B"))) p.normal_(0, 0.3);
        PeftFiles.Save(peft, dir.File("adapter"));
        var table = (VlPeft.Nn.Embedding)model.named_modules().Single(m => m.name == "language_model.model.embed_tokens").module;
        using var values = table.Quantized!.Dequantize(ScalarType.Float32);

        var (code, output, error) = CliRunner.Run("merge", "--model", baseDir, "--adapter", dir.File("adapter"), "--quantize", "nf4", "--quantize-embeddings", "--verify", "--out", dir.File("merged"));
        Assert.True(code == 0, error);
        Assert.Contains("verify: ", output);
        using var merged = PretrainedModel.Load(dir.File("merged"));
        TensorAssert.Close(values, merged.named_parameters().Single(p => p.name == "language_model.model.embed_tokens.weight").parameter, 0);
    }

    [Fact]
    public void Quantizing_while_loading_equals_quantizing_after_and_allocates_no_full_precision_copy()
    {
        string dir = RepoPath.Of("models", "tiny-instructblip");
        using var streamed = PretrainedModel.Load(dir, new PretrainedOptions { Quantize = "nf4" });
        using var after = PretrainedModel.Load(dir);
        QuantizationPlan.Apply(after, QuantizationPlan.Parse("nf4", after, "test"));
        var layers = after.named_modules().Where(m => m.module is VlPeft.Nn.Linear).ToDictionary(m => m.name, m => (VlPeft.Nn.Linear)m.module);
        int quantized = 0;
        foreach (var (name, module) in streamed.named_modules().Where(m => m.module is VlPeft.Nn.Linear))
        {
            var (s, a) = ((VlPeft.Nn.Linear)module, layers[name]);
            Assert.Equal(a.Quantized is null, s.Quantized is null);
            if (s.Quantized is null) { TensorAssert.Close(a.weight, s.weight, 0); continue; }
            quantized++;
            TensorAssert.Close(a.Quantized!.Dequantize(ScalarType.Float32), s.Quantized.Dequantize(ScalarType.Float32), 0);
            Assert.All(s.weight.stride(), stride => Assert.Equal(0, stride));   // the placeholder holds one element
        }
        Assert.Equal(49, quantized);   // 12 vision + 37 language linears; the Q-Former's stay
        Assert.DoesNotContain(streamed.named_parameters(), p => p.parameter.device_type == DeviceType.META);
        var plain = after.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in streamed.named_parameters().Where(p => !p.name.EndsWith(".weight") || !layers.ContainsKey(p.name[..^7])))
            TensorAssert.Close(plain[name], p, 0);
    }

    [Fact]
    public void Quantize_settings_are_checked_and_quantized_weights_are_not_trained()
    {
        using var model = PretrainedModel.Load(RepoPath.Of("models", "tiny-instructblip"));
        var e = Assert.Throws<BadInputException>(() => QuantizationPlan.Parse(new Dictionary<object, object> { ["qformer"] = "nf4" }, model, "x.yaml"));
        Assert.Contains("'qformer' is not a frozen part of instructblip (parts: vision, language_model)", e.Message);
        e = Assert.Throws<BadInputException>(() => QuantizationPlan.Parse("int4", model, "x.yaml"));
        Assert.Contains("'int4' is not one of none, nf4, int8", e.Message);
        var parts = QuantizationPlan.Parse(new Dictionary<object, object> { ["vision"] = "none", ["language_model"] = "int8" }, model, "x.yaml");
        Assert.Equal(new Dictionary<string, string> { ["language_model"] = "int8" }, parts);
        QuantizationPlan.Apply(model, parts);
        Assert.All(model.named_modules().Where(m => m.module is VlPeft.Nn.Linear && m.name.StartsWith("language_model.")),
            m => Assert.Equal("int8", ((VlPeft.Nn.Linear)m.module).Quantized?.Format));
        Assert.All(model.named_modules().Where(m => m.module is VlPeft.Nn.Linear && m.name.StartsWith("vision_model.")),
            m => Assert.Null(((VlPeft.Nn.Linear)m.module).Quantized));
        TrainingPlan.Full.Apply(model);
        e = Assert.Throws<BadInputException>(() => QuantizationPlan.RefuseTrainingQuantized(model, "x.yaml"));
        Assert.Contains("the plan trains quantized weights (language_model.", e.Message);
    }

    [Fact]
    public void A_run_over_an_int8_language_model_and_token_table_trains_and_reports_the_quantization()
    {
        using var dir = new TempDirectory();
        VlPeft.Data.Synthetic.SyntheticSuite.Generate(new VlPeft.Data.Synthetic.SyntheticOptions { Task = "scienceqa", Train = 32, Val = 8, Test = 8, Seed = 2 }, dir.File("sqa"));
        File.WriteAllText(dir.File("q.yaml"), """
            task: scienceqa
            image_only: false
            model:
              quantize:
                language_model: int8
              quantize_embeddings: true
            peft:
              preset: llm-lora-all
              r: 2
            training:
              epochs: 1
              batch_size: 8
              patience: null
              augment: false
            """);
        var (code, output, error) = CliRunner.Run("train", "--config", dir.File("q.yaml"), "--data", dir.File("sqa"), "--model", RepoPath.Of("models", "tiny-instructblip"), "--out", dir.File("run"));
        Assert.True(code == 0, error);
        Assert.Contains("Quantized frozen linear weights and token tables: language_model int8.", File.ReadAllText(dir.File("run/report.md")));
        Assert.True(File.Exists(dir.File("run/adapter/adapter_model.safetensors")));
    }
}
