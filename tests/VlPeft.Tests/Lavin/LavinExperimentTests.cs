using TorchSharp;
using VlPeft.Data.Synthetic;
using VlPeft.Experiments;
using VlPeft.Models;
using VlPeft.Tests.Cli;

namespace VlPeft.Tests.Lavin;

public class LavinExperimentTests
{
    /// <summary>
    /// The Bottleneck Adapter recipe end to end on a LaVIN base pretrained from scratch: QCM-ALE targets, bf16 towers,
    /// AdamW (0.9, 0.95) with timm's decay rule, half-cycle cosine, the last epoch tested by sampled generation
    /// parsed with LaVIN's answer rule; the adapter saved as BOTTLENECK, re-evaluated, merged and reloaded.
    /// </summary>
    [Fact]
    public void Bottleneck_adapter_recipe_runs_end_to_end_and_its_adapter_merges()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "captions", Train = 48, Val = 8, Test = 4, Seed = 1 }, dir.File("captions"));
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 24, Val = 6, Test = 8, Seed = 1 }, dir.File("sqa"));
        var pretrain = ExperimentConfig.Load(RepoPath.Of("configs", "demo", "pretrain-lavin.yaml"));
        pretrain.Data = dir.File("captions");
        pretrain.Training.Epochs = 1;
        ExperimentRunner.Run(pretrain, dir.File("pretrain"));
        string baseModel = dir.File("pretrain/model");

        File.WriteAllText(dir.File("ba.yaml"), """
            task: scienceqa
            image_only: false
            prompt: lavin_qcm_ale
            model:
              dtype: bf16
            peft:
              preset: bottleneck-adapter
            training:
              lr: 0.001
              schedule: half_cycle_cosine
              warmup_epochs: 1
              weight_decay: 0.02
              weight_decay_rule: timm
              adam_beta2: 0.95
              epochs: 2
              batch_size: 8
              patience: null
              test_checkpoint: last
              augment: false
            evaluation:
              mode: generate
              answer_rule: lavin
              max_new_tokens: 8
              temperature: 0.1
              top_p: 0.75
            """);
        var config = ExperimentConfig.Load(dir.File("ba.yaml"));
        config.Data = dir.File("sqa");
        config.Model.Path = baseModel;
        var result = ExperimentRunner.Run(config, dir.File("ba"));
        Assert.InRange(result.TestAccuracy!.Value, 0, 100);
        Assert.Equal($"{result.TestAccuracy:F2}", result.TestCategories!["acc_average"].ToString());          // the ScienceQA category table
        Assert.Contains("| NAT | SOC | LAN | TXT | IMG | NO | G1-6 | G7-12 | Avg |", File.ReadAllText(dir.File("ba/report.md")));
        var adapterConfig = File.ReadAllText(dir.File("ba/adapter/adapter_config.json"));
        Assert.Contains("\"peft_type\": \"BOTTLENECK\"", adapterConfig);
        Assert.Contains("\"adapter_dim\": 16", adapterConfig);
        using (var fresh = ModelFamilies.FromConfigFile(baseModel))                                        // the neck and modality token travel with the adapter
            Assert.Contains("adapter_modality_embedding.weight", VlPeft.Peft.PeftFiles.SavedBaseParameters(fresh, dir.File("ba/adapter")));
        using (var counted = ModelFamilies.FromConfigFile(baseModel, new ModelBuildOptions { Device = torch.META }))
            Assert.Equal(VlPeft.Analysis.ModelParameterSummary.Of(counted, ModelFamilies.Of(counted).PeftPreset("bottleneck-adapter", counted, 8)).Trainable,
                result.TrainableParameters);

        // eval with the saved adapter and the same seeded sampling reproduces the test accuracy.
        var eval = CliRunner.Run("eval", "--config", dir.File("ba.yaml"), "--model", baseModel, "--data", dir.File("sqa"), "--adapter", dir.File("ba/adapter"));
        Assert.True(eval.ExitCode == 0, eval.Err);
        Assert.Contains($"accuracy {result.TestAccuracy:F2} on 8 questions", eval.Out);

        // The router-free adapter folds into the base; the merged checkpoint loads by itself.
        var merge = CliRunner.Run("merge", "--model", baseModel, "--adapter", dir.File("ba/adapter"), "--out", dir.File("merged"));
        Assert.True(merge.ExitCode == 0, merge.Err);
        Assert.Contains("\"attention_bias\": true", File.ReadAllText(dir.File("merged/config.json")));
        Assert.True(File.Exists(dir.File("merged/vocab.txt")));
        var predict = CliRunner.Run("predict", "--model", dir.File("merged"), "--question", "How many shapes?", "--image",
            VlPeft.Data.ScienceQa.ScienceQaReader.Read(dir.File("sqa"), "test").Records.First(r => r.HasImage).ImagePath!);
        Assert.True(predict.ExitCode == 0, predict.Err);
    }

    /// <summary>Table 3 row 10: two adapters of two methods trained together, saved side by side, evaluated and refused at merge.</summary>
    [Fact]
    public void Lora_in_the_llm_beside_a_repadapter_in_the_vit_trains_saves_and_evaluates_as_one_plan()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 16, Val = 4, Test = 6, Seed = 2 }, dir.File("sqa"));
        File.WriteAllText(dir.File("hybrid.yaml"), """
            task: scienceqa
            image_only: false
            peft:
              preset: lora-repadapter
              r: 2
            training:
              epochs: 1
              batch_size: 8
              augment: false
            """);
        var config = ExperimentConfig.Load(dir.File("hybrid.yaml"));
        config.Data = dir.File("sqa");
        config.Model.Path = RepoPath.Of("models", "tiny-lavin");
        var result = ExperimentRunner.Run(config, dir.File("run"));
        using (var counted = ModelFamilies.FromConfigFile(config.Model.Path, new ModelBuildOptions { Device = torch.META }))
        {
            var plan = ModelFamilies.Of(counted).PeftPreset("lora-repadapter", counted, 2);
            Assert.Equal(VlPeft.Analysis.ModelParameterSummary.Of(counted, plan).Trainable, result.TrainableParameters);
        }
        Assert.Contains("\"peft_type\": \"LORA\"", File.ReadAllText(dir.File("run/adapter/adapter_config.json")));
        Assert.Contains("\"peft_type\": \"BOTTLENECK\"", File.ReadAllText(dir.File("run/adapter/vision/adapter_config.json")));
        var eval = CliRunner.Run("eval", "--config", dir.File("hybrid.yaml"), "--model", config.Model.Path, "--data", dir.File("sqa"), "--adapter", dir.File("run/adapter"));
        Assert.True(eval.ExitCode == 0, eval.Err);
        Assert.Contains($"accuracy {result.TestAccuracy:F2} on 6 questions", eval.Out);
        var merge = CliRunner.Run("merge", "--model", config.Model.Path, "--adapter", dir.File("run/adapter"), "--out", dir.File("merged"));
        Assert.Equal(2, merge.ExitCode);
        Assert.Contains("adapter 'vision' cannot be merged", merge.Err);
    }

    [Fact]
    public void Merging_a_lavin_router_adapter_is_refused_on_the_command_line()
    {
        using var dir = new TempDirectory();
        using (var model = ModelFamilies.FromPreset("tiny-lavin"))
        {
            VlPeft.Models.Loading.PretrainedModel.Save(model, dir.File("base"));
            var peft = VlPeft.Models.Multimodal.LavinPeftPresets.Get("lavin-router", ((VlPeft.Models.Multimodal.LavinForConditionalGeneration)model).Config).Apply(model)!;
            VlPeft.Peft.PeftFiles.Save(peft, dir.File("adapter"));
        }
        var merge = CliRunner.Run("merge", "--model", dir.File("base"), "--adapter", dir.File("adapter"), "--out", dir.File("merged"));
        Assert.Equal(2, merge.ExitCode);
        Assert.Contains("router", merge.Err);
        Assert.False(Directory.Exists(dir.File("merged")));
    }
}

public class BottleneckAdapterExperimentFileTests
{
    /// <summary>Every experiment file of the paper resolves against the model it names, with the recipe's settings and the adapter it says.</summary>
    [Fact]
    public void Every_bottleneck_adapter_experiment_file_resolves_with_the_papers_recipe()
    {
        var files = Directory.GetFiles(RepoPath.Of("configs", "bottleneck-adapter"), "*.yaml");
        Assert.Equal(4 + 8 + 6, files.Length);                     // LaVIN 7B/13B/lite + BA; Table 2 grid; Table 3 rows
        var models = new Dictionary<string, VisionLanguageModel>();
        foreach (var file in files)
        {
            var config = ExperimentConfig.Load(file);
            var model = models.TryGetValue(config.Model.Preset!, out var built) ? built
                : models[config.Model.Preset!] = ModelFamilies.FromPreset(config.Model.Preset!, new ModelBuildOptions { Device = torch.META });
            var plan = PeftPlan.Resolve(config.Peft, model, totalSteps: 1000, file);
            Assert.Equal(new[] { "adapter_proj", "adapter_modality_embedding" }, plan.TrainInFull);
            Assert.Equal(ExperimentConfig.LavinPrompt, config.Prompt);
            Assert.Equal(("half_cycle_cosine", 2.0, 0.02, "timm", 0.95, "last", 20), (config.Training.Schedule, config.Training.WarmupEpochs,
                config.Training.WeightDecay, config.Training.WeightDecayRule, config.Training.AdamBeta2, config.Training.TestCheckpoint, config.Training.Epochs));
            Assert.Equal(("generate", "lavin", 0.1, 0.75), (config.Evaluation.Mode, config.Evaluation.AnswerRule, config.Evaluation.Temperature, config.Evaluation.TopP));
            bool lavin = Path.GetFileName(file).StartsWith("lavin-");
            Assert.Equal(lavin ? 1.125e-3 : 0.009, config.Training.Lr);                // blr 9e-3 × 32/256, or the paper's absolute 0.009
            Assert.Equal(lavin ? 32 : 1, config.Training.BatchSize * config.Training.GradientAccumulation);
            if (Path.GetFileName(file).Contains("lora-repadapter"))
            {
                Assert.Equal("LORA", plan.Peft!.PeftType);
                Assert.Equal("BOTTLENECK", Assert.Single(plan.MoreAdapters).Config.PeftType);
            }
            if (Path.GetFileName(file).StartsWith("ablation-table2"))
            {
                var dims = System.Text.RegularExpressions.Regex.Match(file, @"dim(\d+)-groups(\d+)");
                var bottleneck = (VlPeft.Peft.Bottleneck.BottleneckConfig)plan.Peft!;
                Assert.Equal((int.Parse(dims.Groups[1].Value), int.Parse(dims.Groups[2].Value), false), (bottleneck.AdapterDim, bottleneck.Groups, bottleneck.Router));
            }
        }
        foreach (var model in models.Values) model.Dispose();
    }
}
