using TorchSharp;
using VlPeft.Data.Synthetic;
using VlPeft.Experiments;
using VlPeft.Imaging;
using VlPeft.Peft;
using VlPeft.Peft.Lora;
using VlPeft.Tensors;
using VlPeft.Tests.Cli;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Reliability;

/// <summary>Bad values get one clear line and exit 2 (3 for divergence), never an internal error.</summary>
public class BadValueTests
{
    static string Experiment(TempDirectory dir, string training, string peft = "  preset: qformer-lora-self\n  r: 2\n")
    {
        string file = dir.File("exp.yaml");
        File.WriteAllText(file, "name: t\ntask: scienceqa\nimage_only: false\npeft:\n" + peft + "training:\n  augment: false\n" + training);
        return file;
    }

    /// <summary>`vlpeft train` of a small synthetic ScienceQA split on the committed tiny base.</summary>
    static (int ExitCode, string Out, string Err) TrainTiny(TempDirectory dir, string experiment, string runName, params string[] extra)
    {
        if (!Directory.Exists(dir.File("sqa")))
            SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 16, Val = 4, Test = 4, ImageSize = 32 }, dir.File("sqa"));
        return CliRunner.Run(new[] { "train", "--config", experiment, "--data", dir.File("sqa"), "--model", RepoPath.Of("models", "tiny-instructblip"),
            "--out", dir.File(runName) }.Concat(extra).ToArray());
    }

    [Theory]
    [InlineData("  lr: -0.1\n", "training: lr must be a finite number > 0, got -0.1")]
    [InlineData("  lr: .nan\n", "training: lr must be a finite number > 0, got NaN")]
    [InlineData("  batch_size: 0\n", "training: batch_size must be an integer >= 1, got 0")]
    [InlineData("  gradient_accumulation: 0\n", "training: gradient_accumulation must be an integer >= 1, got 0")]
    [InlineData("  epochs: 0\n", "training: epochs must be an integer >= 1, got 0")]
    [InlineData("  patience: -1\n", "training: patience must be an integer >= 0 (or absent), got -1")]
    [InlineData("  schedule: fast\n", "training: schedule must be one of")]
    public void Out_of_range_training_values_are_refused_naming_the_key_and_the_file(string training, string message)
    {
        using var dir = new TempDirectory();
        string file = Experiment(dir, training);
        var (code, _, error) = CliRunner.Run("train", "--config", file, "--data", dir.Path, "--model", dir.Path);
        Assert.Equal(2, code);
        Assert.Contains(message, error);
        Assert.Contains(file, error);
        Assert.DoesNotContain("internal error", error);
    }

    [Fact]
    public void A_diverging_run_exits_3_with_the_step_and_the_checkpoint_state()
    {
        using var dir = new TempDirectory();
        // An absurd learning rate sends every adapted weight to ±1e30 after the first step: the next loss is not finite.
        var (code, _, error) = TrainTiny(dir, Experiment(dir, "  lr: 1.0e+30\n  batch_size: 8\n  epochs: 2\n"), "run");
        Assert.Equal(3, code);
        Assert.Contains("error: training diverged: loss became", error);
        Assert.Contains("optimizer step", error);
        Assert.DoesNotContain("internal error", error);
    }

    [Fact]
    public void Resume_with_nothing_to_resume_is_an_error()
    {
        using var dir = new TempDirectory();
        var (code, _, error) = TrainTiny(dir, Experiment(dir, "  epochs: 1\n"), "run", "--resume");
        Assert.Equal(2, code);
        Assert.Contains("holds no checkpoint to continue from", error);
    }

    [Fact]
    public void Lr_groups_must_name_a_parameter_group_of_the_model()
    {
        using var dir = new TempDirectory();
        var (code, _, error) = TrainTiny(dir, Experiment(dir, "  epochs: 1\n  lr_groups:\n    vision_tower: 0.001\n"), "run");
        Assert.Equal(2, code);
        Assert.Contains("lr_groups: 'vision_tower' is not a parameter group of instructblip (vision, qformer, connector, language_model)", error);
        var trained = TrainTiny(dir, Experiment(dir, "  epochs: 1\n  lr_groups:\n    qformer: 0.0001\n    connector: 0.001\n"), "run2");
        Assert.True(trained.ExitCode == 0, trained.Err);
    }

    [Fact]
    public void Training_into_a_directory_holding_a_run_needs_resume_or_overwrite()
    {
        using var dir = new TempDirectory();
        string file = Experiment(dir, "  epochs: 1\n  batch_size: 8\n");
        Assert.Equal(0, TrainTiny(dir, file, "run").ExitCode);
        var again = TrainTiny(dir, file, "run");
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("already holds a run", again.Err);
        var replaced = TrainTiny(dir, file, "run", "--overwrite");
        Assert.True(replaced.ExitCode == 0, replaced.Err);
        Assert.Equal(2, TrainTiny(dir, file, "run", "--overwrite", "--resume").ExitCode);
    }

    [Theory]
    [InlineData("--top-p", "-1", "--top-p must be in (0, 1]")]
    [InlineData("--beams", "0", "--beams must be >= 1")]
    [InlineData("--temperature", "-1", "--temperature must be a finite number >= 0")]
    public void Meaningless_generation_settings_are_refused_before_loading_anything(string option, string value, string message)
    {
        using var dir = new TempDirectory();
        string file = Experiment(dir, "");
        var (code, _, error) = CliRunner.Run("eval", "--config", file, "--data", dir.Path, "--model", dir.Path, "--generate", option, value);
        Assert.Equal(2, code);
        Assert.Contains(message, error);
    }

    [Fact]
    public void An_adapter_holding_nan_is_refused_on_load_naming_the_tensor()
    {
        using var dir = new TempDirectory();
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, new LoraConfig { TargetModules = ModuleSelector.FromNames("query") });
        var (name, p, _) = peft.AdapterParameterEntries("default").First(e => e.Name.Contains("lora_B"));
        using (torch.no_grad()) p.fill_(float.NaN);
        PeftFiles.Save(peft, dir.Path);
        using var fresh = new ToyModel();
        var error = Assert.Throws<BadInputException>(() => PeftFiles.Load(fresh, dir.Path));
        Assert.Contains("holds NaN or infinite values", error.Message);
        Assert.Contains(PeftFiles.Prefix + PeftFiles.WithoutAdapterName(name, "default"), error.Message);
    }

    [Fact]
    public void A_config_json_with_a_negative_or_absurd_size_is_refused_by_params()
    {
        using var dir = new TempDirectory();
        string preset = VlPeft.Models.Configs.ModelPresets.Json("tiny-instructblip");
        File.WriteAllText(dir.File("config.json"), preset.Replace("\"num_hidden_layers\": 3", "\"num_hidden_layers\": -5"));
        var negative = CliRunner.Run("params", "--config", dir.File("config.json"));
        Assert.Equal(2, negative.ExitCode);
        Assert.Contains("vision_config.num_hidden_layers must be between 1 and 1,024, got -5", negative.Err);
        File.WriteAllText(dir.File("config.json"), preset.Replace("\"num_hidden_layers\": 3", "\"num_hidden_layers\": 2000000000"));
        Assert.Contains("got 2000000000", CliRunner.Run("params", "--config", dir.File("config.json")).Err);
    }

    [Theory]
    [InlineData("qformer-lora-all", "100000", "r = 100000 for 'qformer.encoder.layer.0.attention.attention.query' must be between 1 and the layer's in + out = 128")]
    [InlineData("qformer-lora-all", "0", "--rank must be positive, got 0")]
    public void A_rank_outside_the_layers_dimensions_is_refused_before_allocating(string preset, string rank, string message)
    {
        var run = CliRunner.Run("params", "--preset", "tiny-instructblip", "--peft", preset, "--rank", rank);
        Assert.Equal(2, run.ExitCode);
        Assert.Contains(message, run.Err);
        using var model = VlPeft.Models.ModelFamilies.FromPreset("tiny-lavin", new VlPeft.Models.ModelBuildOptions { Device = TorchSharp.torch.META });
        var ada = new VlPeft.Peft.AdaLora.AdaLoraConfig { TargetModules = VlPeft.Peft.ModuleSelector.FromNames("q_proj"), InitR = 1000, TargetR = 8, TotalStep = 10 };
        Assert.Contains("init_r = 1000", Assert.Throws<BadInputException>(() => VlPeft.Peft.PeftModel.Create(model, ada)).Message);
    }

    [Fact]
    public void Endless_and_truncated_images_get_a_readable_error()
    {
        var endless = Assert.Throws<BadInputException>(() => ImagePipeline.Decode("/dev/zero"));
        Assert.Contains("larger than 256 MiB", endless.Message);
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 1, Val = 1, Test = 1, ImageSize = 32 }, dir.File("sqa"));
        string png = Directory.GetFiles(dir.File("sqa"), "*.png", SearchOption.AllDirectories).First();
        var bytes = File.ReadAllBytes(png);
        File.WriteAllBytes(dir.File("cut.png"), bytes[..(bytes.Length / 2)]);
        var truncated = Assert.Throws<BadInputException>(() => ImagePipeline.Decode(dir.File("cut.png")));
        Assert.StartsWith("image cannot be decoded: ", truncated.Message);
        Assert.DoesNotContain(truncated.Message, c => char.IsControl(c));
    }

    [Fact]
    public void Huge_synthetic_counts_are_refused()
    {
        using var dir = new TempDirectory();
        var (code, _, error) = CliRunner.Run("data", "synth", "--task", "scienceqa", "--out", dir.Path, "--train", "2000000000");
        Assert.Equal(2, code);
        Assert.Contains("at most 1,000,000", error);
    }
}

/// <summary>torch's random generator is one per process: runs in parallel tests would draw from it between a seed and its use.</summary>
[CollectionDefinition("torch random generator", DisableParallelization = true)]
public class TorchRandomCollection { }

[Collection("torch random generator")]
public class ReproducibilityTests
{
    [Fact]
    public void Two_runs_with_the_same_seed_write_the_same_adapter_bytes()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 16, Val = 4, Test = 4, ImageSize = 32 }, dir.File("sqa"));
        byte[] Train(string name)
        {
            var config = new ExperimentConfig
            {
                Name = name, Task = "scienceqa", ImageOnly = false, Data = dir.File("sqa"),
                Model = new ExperimentConfig.ModelSection { Path = RepoPath.Of("models", "tiny-instructblip") },
                Peft = new() { ["preset"] = "qformer-lora-all", ["r"] = 2 },
                Training = new ExperimentConfig.TrainingSection { Epochs = 1, BatchSize = 8, Lr = 1e-3, Augment = false, Seed = 7 },
            };
            ExperimentRunner.Run(config, dir.File(name));
            return File.ReadAllBytes(dir.File($"{name}/adapter/{PeftFiles.WeightsFileName}"));
        }
        var first = Train("a");
        torch.manual_seed(12345);   // whatever the global RNG holds, the run's own seed decides
        torch.randn(100);
        Assert.Equal(first, Train("b"));
    }
}
