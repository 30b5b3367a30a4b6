using TorchSharp;
using VlPeft.Experiments;
using VlPeft.Models;
using VlPeft.Peft;
using VlPeft.Peft.AdaLora;
using VlPeft.Peft.Lora;
using VlPeft.Training;
using static TorchSharp.torch;

namespace VlPeft.Tests.Experiments;

/// <summary>The experiment file's peft: section (preset + HF keys) and training: lr_groups.</summary>
public class PeftPlanTests
{
    static VisionLanguageModel Tiny() => ModelFamilies.FromPreset("tiny-instructblip", new ModelBuildOptions { Device = torch.META });

    [Theory]
    [InlineData("tiny-lavin", "llm-lora", 2.0)]                 // LaVIN: α = 2r
    [InlineData("vit-roberta-base-vqa", "roberta-lora", 1.0)]   // routing paper: α = r
    public void A_yaml_rank_reaches_presets_whose_alpha_follows_the_rank(string modelPreset, string peftPreset, double alphaPerRank)
    {
        // YAML scalars arrive as strings and become JSON longs: the preset must still see r = 16.
        using var model = ModelFamilies.FromPreset(modelPreset, new ModelBuildOptions { Device = torch.META });
        var plan = PeftPlan.Resolve(new Dictionary<string, object?> { ["preset"] = peftPreset, ["r"] = "16" }, model, 100, "f.yaml");
        var lora = Assert.IsType<LoraConfig>(plan.Peft);
        Assert.Equal((16, 16 * alphaPerRank), (lora.R, lora.LoraAlpha));
    }

    [Fact]
    public void A_preset_with_overrides_and_a_change_of_method_keep_the_presets_targets()
    {
        using var model = Tiny();
        var lora = PeftPlan.Resolve(new Dictionary<string, object?> { ["preset"] = "qformer-lora-all", ["r"] = "2", ["use_rslora"] = "true" }, model, 100, "f.yaml");
        var loraConfig = Assert.IsType<LoraConfig>(lora.Peft);
        Assert.Equal(2, loraConfig.R);
        Assert.True(loraConfig.UseRslora);
        Assert.Contains("vision_model.post_layernorm", lora.TrainInFull);

        var ada = PeftPlan.Resolve(new Dictionary<string, object?> { ["preset"] = "qformer-lora-all", ["peft_type"] = "ADALORA", ["init_r"] = 6, ["target_r"] = 4 }, model, 120, "f.yaml");
        var adaConfig = Assert.IsType<AdaLoraConfig>(ada.Peft);
        Assert.Equal(loraConfig.TargetModules, adaConfig.TargetModules);
        Assert.Equal(120, adaConfig.TotalStep);                      // filled from the run
        Assert.Equal(lora.TrainInFull, ada.TrainInFull);

        var loha = PeftPlan.Resolve(new Dictionary<string, object?> { ["peft_type"] = "LOHA", ["target_modules"] = new[] { "query", "value" }, ["train_in_full"] = new[] { "query_tokens" } }, model, 1, "f.yaml");
        Assert.Equal("LOHA", loha.Peft!.PeftType);
        Assert.Equal(new[] { "query_tokens" }, loha.TrainInFull);
        var full = PeftPlan.Resolve(new Dictionary<string, object?> { ["preset"] = "full" }, model, 1, "f.yaml");
        Assert.Null(full.Peft);
        Assert.Equal(TrainingPlan.Full.TrainInFull, full.TrainInFull);
    }

    [Theory]
    [InlineData("r_typo", "unknown key 'r_typo'")]
    [InlineData("lora_alpah", "unknown key 'lora_alpah'")]
    public void An_unknown_peft_key_is_an_error_naming_the_key_and_the_file(string key, string message)
    {
        using var model = Tiny();
        var error = Assert.Throws<BadInputException>(() => PeftPlan.Resolve(new Dictionary<string, object?> { ["preset"] = "qformer-lora-all", [key] = 1 }, model, 1, "exp.yaml"));
        Assert.Contains(message, error.Message);
        Assert.Equal("exp.yaml", error.File);
        Assert.Contains("takes no adapter keys", Assert.Throws<BadInputException>(() =>
            PeftPlan.Resolve(new Dictionary<string, object?> { ["preset"] = "qformer-full", ["r"] = 4 }, model, 1, "exp.yaml")).Message);
    }

    [Fact]
    public void Unknown_keys_in_an_experiment_file_name_the_key_and_the_section()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("a.yaml"), "name: a\ntraining:\n  lr: 0.1\n  epochz: 3\n");
        var error = Assert.Throws<BadInputException>(() => ExperimentConfig.Load(dir.File("a.yaml")));
        Assert.Contains("unknown key 'epochz' in training:", error.Message);
        Assert.Equal(dir.File("a.yaml"), error.File);
    }

    [Fact]
    public void Lr_groups_give_each_group_its_learning_rate_and_the_schedule_scales_them_alike()
    {
        var options = new TrainerOptions { LearningRate = 1e-3, PrefixLearningRates = new Dictionary<string, double> { ["qformer"] = 1e-4, ["qformer.encoder"] = 5e-5 } };
        Assert.Equal(1e-4, options.LearningRateFor("qformer.embeddings.layernorm.weight"));
        Assert.Equal(5e-5, options.LearningRateFor("qformer.encoder.layer.0.attention.attention.query.weight"));   // longest prefix wins
        Assert.Equal(1e-3, options.LearningRateFor("language_projection.weight"));
        var a = new TorchSharp.Modules.Parameter(torch.zeros(2, 2));
        var b = new TorchSharp.Modules.Parameter(torch.zeros(2, 2));
        using var optimizer = OptimizerFactory.AdamW(new[] { ("qformer.x.weight", a), ("language_projection.weight", b) }, 1e-3, 0.05, learningRateFor: options.LearningRateFor);
        var ratios = OptimizerFactory.LearningRateRatios(optimizer, 1e-3);
        OptimizerFactory.SetLearningRate(optimizer, 5e-4, ratios);   // the schedule at half the base rate
        var rates = optimizer.ParamGroups.Select(g => g.LearningRate).OrderBy(x => x).ToArray();
        Assert.Equal(5e-5, rates[0], 12);
        Assert.Equal(5e-4, rates[1], 12);
    }
}
