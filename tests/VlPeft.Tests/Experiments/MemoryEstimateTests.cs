using TorchSharp;
using VlPeft.Analysis;
using VlPeft.Experiments;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;

namespace VlPeft.Tests.Experiments;

public class MemoryEstimateTests
{
    [Fact]
    public void Estimate_counts_weights_gradients_adamw_and_activations_by_formula()
    {
        using var model = ModelFamilies.FromPreset("tiny-vit-roberta-vqa", new ModelBuildOptions { Device = torch.META });
        var all = model.named_parameters().Sum(p => p.parameter.NumberOfElements);
        RoutingPeftPresets.Roberta("roberta-lora", 8).Apply(model);
        long trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Sum(p => p.parameter.NumberOfElements);
        long total = model.named_parameters().Sum(p => p.parameter.NumberOfElements);
        Assert.True(total > all && trainable > 0);

        var fp32 = MemoryEstimate.Of(model, batchSize: 3, frozenTowersBf16: false);
        Assert.Equal(4 * total, fp32.WeightBytes);
        Assert.Equal(4 * trainable, fp32.GradientBytes);
        Assert.Equal(8 * trainable, fp32.OptimizerBytes);
        // tiny-vit-roberta-vqa: ViT 48 px / patch 8 → 37 tokens; RoBERTa 19 question tokens + the visual one; both 64 wide, 2 layers, 4 heads, FFN 128.
        static double Layer(double s) => s * (10 * 64 + 2 * 128) + 2.5 * 4 * s * s;
        Assert.Equal((long)(3 * 4 * 2 * (Layer(37) + Layer(20))), fp32.ActivationBytes);

        // bf16 towers: their frozen weights and the activations take 2 bytes; trained tensors stay fp32.
        var bf16 = MemoryEstimate.Of(model, batchSize: 3, frozenTowersBf16: true);
        long frozenTower = model.named_parameters().Where(p => !p.parameter.requires_grad && model.GroupOf(p.name) is { FrozenTower: true }).Sum(p => p.parameter.NumberOfElements);
        Assert.Equal(4 * total - 2 * frozenTower, bf16.WeightBytes);
        Assert.Equal(fp32.ActivationBytes / 2, bf16.ActivationBytes, 1.0);

        // nf4 frozen linear weights: each counted at its NF4 size (4096 values → 3204 bytes for 64 × 64) instead of 2 bytes a value.
        var frozenLinears = model.named_modules().Where(m => m.module is VlPeft.Nn.Linear l && !l.weight.requires_grad && model.GroupOf(m.name + ".weight") is { FrozenTower: true })
            .ToDictionary(m => m.name + ".weight", m => (VlPeft.Nn.Linear)m.module);
        var nf4 = MemoryEstimate.Of(model, batchSize: 3, frozenTowersBf16: true, name => frozenLinears.ContainsKey(name) ? "nf4" : null);
        long saved = frozenLinears.Values.Sum(l => 2 * l.OutFeatures * l.InFeatures - VlPeft.Nn.Quantization.QuantizedWeight.BytesFor("nf4", l.OutFeatures, l.InFeatures, 2));
        Assert.True(saved > 0);
        Assert.Equal(bf16.WeightBytes - saved, nf4.WeightBytes);
    }

    [Fact]
    public void A_run_that_cannot_fit_is_refused_before_any_weight_is_read()
    {
        using var dir = new TempDirectory();
        // A 7B checkpoint directory with only its config.json: the refusal must come before the loader looks for weights.
        Directory.CreateDirectory(dir.File("vicuna"));
        File.WriteAllText(dir.File("vicuna/config.json"), ModelPresets.Json("instructblip-vicuna-7b"));
        Directory.CreateDirectory(dir.File("data"));
        var config = new ExperimentConfig
        {
            Name = "huge", Task = "scienceqa", Data = dir.File("data"),
            Model = new ExperimentConfig.ModelSection { Path = dir.File("vicuna") },
            Peft = new() { ["preset"] = "full" },
            Training = new ExperimentConfig.TrainingSection { BatchSize = 4096 },
        };
        var error = Assert.Throws<BadInputException>(() => ExperimentRunner.Run(config, dir.File("run")));
        Assert.Contains("GB", error.Message);
        Assert.Contains("batch_size", error.Message);
        Assert.Contains("VLPEFT_MEMORY_CHECK=0", error.Message);
        Assert.False(File.Exists(dir.File("run/checkpoints/last/state.json")));
    }
}

public class QuantizedTableEstimateTests
{
    [Fact]
    public void Quantizing_token_tables_lowers_the_estimate_by_the_tables_nf4_saving()
    {
        ExperimentConfig Config(bool tables) => new()
        {
            Name = "q", Task = "scienceqa",
            Model = new ExperimentConfig.ModelSection { Path = RepoPath.Of("models", "tiny-instructblip"), Dtype = "bf16", Quantize = "nf4", QuantizeEmbeddings = tables },
            Peft = new() { ["preset"] = "qformer-lora-all", ["r"] = 2 },
        };
        var linearsOnly = ExperimentRunner.EstimateMemory(Config(false), "q.yaml")!;
        var withTables = ExperimentRunner.EstimateMemory(Config(true), "q.yaml")!;
        // T5's one shared table (encoder and decoder read it): 167 × 64, bf16 → nf4.
        long saved = 2 * 167 * 64 - VlPeft.Nn.Quantization.QuantizedWeight.BytesFor("nf4", 167, 64, 2);
        Assert.Equal(linearsOnly.WeightBytes - saved, withTables.WeightBytes);
        Assert.Equal(linearsOnly.ActivationBytes, withTables.ActivationBytes);

        // The run loads what it estimated: the shared table quantized with the linear weights, in bf16 compute.
        var (model, _) = ExperimentRunner.LoadModel(Config(true), RepoPath.Of("models", "tiny-instructblip"), null);
        using (model)
        {
            var table = (VlPeft.Nn.Embedding)model.named_modules().Single(m => m.name == "language_model.shared").module;
            Assert.Equal("nf4", table.Quantized?.Format);
            Assert.Equal(TorchSharp.torch.ScalarType.BFloat16, table.weight.dtype);
        }
    }
}
