using TorchSharp;
using VlPeft.Models;
using VlPeft.Data.Synthetic;
using VlPeft.Evaluation;
using VlPeft.Experiments;
using VlPeft.Imaging;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Text.Tokenizers;
using VlPeft.Tests.Cli;
using static TorchSharp.torch;

namespace VlPeft.Tests.Experiments;

public class ExperimentTests
{
    [Fact]
    public void Every_paper_experiment_file_loads_and_names_the_missing_model_or_data()
    {
        var files = Directory.GetFiles(RepoPath.Of("configs", "instructblip-peft"), "*.yaml", SearchOption.AllDirectories);
        Assert.Equal(2 * (64 + 2), files.Length); // 64 ids per dataset + AdaLoRA for T5 and Vicuna
        var presets = new Dictionary<string, VisionLanguageModel>();
        foreach (var file in files)
        {
            var config = ExperimentConfig.Load(file);
            // The peft: section resolves against the paper model it names (built on the meta device, no weights).
            var model = presets.TryGetValue(config.Model.Preset!, out var built) ? built
                : presets[config.Model.Preset!] = ModelFamilies.FromPreset(config.Model.Preset!, new ModelBuildOptions { Device = torch.META });
            var plan = PeftPlan.Resolve(config.Peft, model, totalSteps: 1000, file);
            Assert.Contains("query_tokens", plan.TrainInFull);
            Assert.Contains(config.Task, new[] { "scienceqa", "iconqa" });
            Assert.True(config.Training.Lr is 1e-5 or 2e-5 or 1e-4 or 5e-4, file);
            Assert.Equal(16, config.Training.BatchSize * config.Training.GradientAccumulation);
            Assert.Equal(0.05, config.Training.WeightDecay);
        }
        foreach (var model in presets.Values) model.Dispose();
        var one = files.Single(f => f.EndsWith("scienceqa/25-t5-qformer-lora-all-r1.yaml".Replace('/', Path.DirectorySeparatorChar)));
        var noData = CliRunner.Run("train", "--config", one);
        Assert.Equal(2, noData.ExitCode);
        Assert.Contains("no data directory", noData.Err);
        using var dir = new TempDirectory();
        var noModel = CliRunner.Run("train", "--config", one, "--data", dir.Path, "--out", dir.File("run"));
        Assert.Equal(2, noModel.ExitCode);
        Assert.Contains("no model directory", noModel.Err);
        var missing = CliRunner.Run("train", "--config", one, "--data", dir.Path, "--model", dir.File("nope"), "--out", dir.File("run"));
        Assert.Contains("model directory not found", missing.Err);
    }

    [Fact]
    public void Pretraining_then_peft_fine_tuning_runs_end_to_end_and_writes_the_run_directory()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "captions", Train = 48, Val = 8, Test = 4, Seed = 1 }, dir.File("captions"));
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 32, Val = 8, Test = 12, Seed = 1 }, dir.File("sqa"));
        var pretrain = ExperimentConfig.Load(RepoPath.Of("configs", "demo", "pretrain.yaml"));
        pretrain.Data = dir.File("captions");
        pretrain.Training.Epochs = 1;
        var base_ = ExperimentRunner.Run(pretrain, dir.File("pretrain"));
        Assert.Equal(base_.TotalParameters, base_.TrainableParameters);
        Assert.True(File.Exists(dir.File("pretrain/model/model.safetensors")) && File.Exists(dir.File("pretrain/model/vocab.txt")));

        var finetune = new ExperimentConfig
        {
            Name = "ft", Task = "scienceqa", ImageOnly = false, Data = dir.File("sqa"),
            Model = new ExperimentConfig.ModelSection { Path = dir.File("pretrain/model"), Dtype = "bf16" },
            Peft = new() { ["preset"] = "qformer-lora-self", ["r"] = 2 },
            Training = new ExperimentConfig.TrainingSection { Epochs = 1, BatchSize = 8, Lr = 1e-3 },
        };
        var result = ExperimentRunner.Run(finetune, dir.File("ft"));
        Assert.InRange(result.TestAccuracy!.Value, 0, 100);
        Assert.NotNull(result.TestCategories);
        Assert.True(File.Exists(dir.File("ft/adapter/adapter_config.json")));
        // In the bf16 tower the trained post_layernorm went back to fp32 and stayed trainable: the count equals the preset's.
        using (var counted = ModelFamilies.FromConfigFile(dir.File("pretrain/model"), new ModelBuildOptions { Device = torch.META }))
            Assert.Equal(VlPeft.Analysis.ModelParameterSummary.Of(counted, ModelFamilies.Of(counted).PeftPreset("qformer-lora-self", counted, 2)).Trainable,
                result.TrainableParameters);
        using (var adapterFile = VlPeft.Tensors.SafetensorsFile.Open(dir.File("ft/adapter/adapter_model.safetensors")))
            Assert.Equal("F32", adapterFile.Header.Tensors.Single(t => t.Name == "base_model.model.vision_model.post_layernorm.weight").DType);
        var adapterConfig = File.ReadAllText(dir.File("ft/adapter/adapter_config.json"));
        Assert.Contains("\"task_type\": \"SEQ_2_SEQ_LM\"", adapterConfig);
        Assert.Contains("\"base_model_name_or_path\": ", adapterConfig);
        Assert.True(File.Exists(dir.File("ft/report.md")));
        Assert.True(File.Exists(dir.File("ft/metrics.jsonl")));
        // The predictions file re-scores to the same average through the official scorer.
        var score = CliRunner.Run("score", "scienceqa", "--data", dir.File("sqa"), "--predictions", dir.File("ft/predictions.json"), "--json");
        Assert.Equal(0, score.ExitCode);
        Assert.Contains($"\"acc_average\": \"{result.TestAccuracy:F2}\"", score.Out);

        // eval with the saved adapter reproduces the test accuracy (a new process would do the same).
        File.WriteAllText(dir.File("ft.yaml"), "task: scienceqa\nimage_only: false\nmodel:\n  dtype: bf16\n");
        var eval = CliRunner.Run("eval", "--config", dir.File("ft.yaml"), "--model", dir.File("pretrain/model"), "--data", dir.File("sqa"), "--adapter", dir.File("ft/adapter"));
        Assert.True(eval.ExitCode == 0, eval.Err);
        Assert.Contains($"accuracy {result.TestAccuracy:F2} on 12 questions", eval.Out);
        var generated = CliRunner.Run("eval", "--config", dir.File("ft.yaml"), "--model", dir.File("pretrain/model"), "--data", dir.File("sqa"),
            "--adapter", dir.File("ft/adapter"), "--generate", "--predictions-out", dir.File("new-folder/gen.json"));
        Assert.True(generated.ExitCode == 0, generated.Err);
        Assert.Contains("on 12 questions", generated.Out);
        Assert.True(File.Exists(dir.File("new-folder/gen.json"))); // the folder is created

        var record = VlPeft.Data.ScienceQa.ScienceQaReader.Read(dir.File("sqa"), "test").Records.First(r => r.HasImage);
        var predict = CliRunner.Run("predict", "--model", dir.File("pretrain/model"), "--adapter", dir.File("ft/adapter"), "--image", record.ImagePath!,
            "--question", record.Question, "--choices", string.Join('|', record.Choices), "--hint", record.Hint);
        Assert.True(predict.ExitCode == 0, predict.Err);
        Assert.Contains(predict.Out.Trim(), record.Choices);
        var open = CliRunner.Run("predict", "--model", dir.File("pretrain/model"), "--image", record.ImagePath!, "--question", "What color is it?");
        Assert.Equal(0, open.ExitCode);
        var missing = CliRunner.Run("predict", "--model", dir.File("pretrain/model"), "--image", dir.File("none.png"), "--question", "?");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("image file not found", missing.Err);
        var empty = CliRunner.Run("predict", "--model", dir.File("pretrain/model"), "--image", record.ImagePath!, "--question", "?", "--choices", "");
        Assert.Equal(2, empty.ExitCode);
        Assert.Contains("choices must be non-empty", empty.Err);
    }

    [Fact]
    public void Text_only_blanks_every_image_but_keeps_the_image_categories()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 20, Val = 2, Test = 2, Seed = 3, ImageSize = 16 }, dir.Path);
        var config = new ExperimentConfig { Task = "scienceqa", ImageOnly = false };
        var withImages = ExperimentRunner.ReadChoiceSplit(config, dir.Path, "train");
        config.TextOnly = true;
        var blind = ExperimentRunner.ReadChoiceSplit(config, dir.Path, "train");
        Assert.Contains(withImages, r => r.ImagePath != null);
        Assert.All(blind, r => Assert.Null(r.ImagePath));
        Assert.Equal(withImages.Select(r => (r.Id, r.HasImage)), blind.Select(r => (r.Id, r.HasImage)));
    }

    /// <summary>An untrained tiny InstructBLIP with the synthetic vocabulary (tokenizer files written under <paramref name="dir"/>).</summary>
    static (BlipForConditionalGeneration Model, BlipProcessor Processor) FreshTinyModel(TempDirectory dir)
    {
        var vocab = TinyVocabulary.Build(Array.Empty<string>());
        Directory.CreateDirectory(dir.File("tok"));
        WordPieceVocabulary.Write(dir.File("tok/vocab.txt"), vocab);
        var tokenizer = TextTokenizer.FromDirectory(dir.File("tok"));
        var config = VlPeft.Models.Configs.ModelPresets.Get("tiny-instructblip");
        config = config with { QFormer = config.QFormer with { VocabSize = vocab.Count + 1 }, Text = config.Text with { VocabSize = vocab.Count } };
        var model = new BlipForConditionalGeneration(config);
        return (model, new BlipProcessor(tokenizer, tokenizer, new ImagePipeline(48, ImageNormalization.Clip), decoderOnly: false));
    }

    [Fact]
    public void Without_augmentation_the_training_loss_does_not_depend_on_the_random_stream()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "iconqa", Train = 4, Val = 1, Test = 1, Seed = 3 }, dir.File("iqa"));
        var tiny = FreshTinyModel(dir);
        using var model = tiny.Model;
        var processor = tiny.Processor;
        model.eval();
        var records = VlPeft.Data.IconQa.IconQaReader.Read(dir.File("iqa"), "train").Records;
        float Loss(bool augment, int seed)
        {
            using var _ = torch.no_grad();
            var task = new ChoiceTask(model, processor, records, records, VlPeft.Text.InstructBlipPeftPrompts.IconQa) { Augment = augment };
            return task.Loss(new[] { 0, 1, 2, 3 }, 0, new Random(seed)).item<float>();
        }
        Assert.Equal(Loss(false, 1), Loss(false, 2));
        Assert.NotEqual(Loss(true, 1), Loss(true, 2)); // crops and flips drawn from the stream change the pixels
    }

    [Fact]
    public void Ranking_scores_are_the_summed_token_nll_and_generation_is_deterministic()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 4, Val = 2, Test = 2, Seed = 3 }, dir.File("sqa"));
        var tiny = FreshTinyModel(dir);
        using var model = tiny.Model;
        var processor = tiny.Processor;
        var record = VlPeft.Data.ScienceQa.ScienceQaReader.Read(dir.File("sqa"), "test").Records[0];
        var prompt = VlPeft.Text.InstructBlipPeftPrompts.ScienceQa(record);
        var (best, scores) = new CandidateRanker(model, processor).Rank(record.ImagePath, prompt.Instruction, prompt.Candidates);
        Assert.Equal(Array.IndexOf(scores, scores.Min()), best);
        // Independent path: the model's mean loss on each candidate times its token count.
        model.eval();
        for (int i = 0; i < prompt.Candidates.Count; i++)
        {
            using var _ = torch.no_grad();
            var batch = processor.TrainingBatch(new[] { new TextExample(record.ImagePath, prompt.Instruction, prompt.Candidates[i]) });
            batch = batch with { InputIds = torch.tensor(processor.InstructionIds(prompt.Instruction, truncate: false).Select(x => (long)x).ToArray()).unsqueeze(0), AttentionMask = null };
            double mean = model.call(batch).Loss!.item<float>();
            Assert.Equal(mean * processor.AnswerIds(prompt.Candidates[i]).Length, scores[i], tolerance: 1e-3);   // float32 sums in another order
        }
        var generator = new TextGenerator(model, processor);
        string greedy = generator.Generate(record.ImagePath, prompt.Instruction, new GenerationOptions { MaxNewTokens = 5 });
        Assert.Equal(greedy, generator.Generate(record.ImagePath, prompt.Instruction, new GenerationOptions { MaxNewTokens = 5 }));
        string beam = generator.Generate(record.ImagePath, prompt.Instruction, new GenerationOptions { MaxNewTokens = 5, NumBeams = 3 });
        string sampled = generator.Generate(record.ImagePath, prompt.Instruction, new GenerationOptions { MaxNewTokens = 5, Temperature = 1.0, TopP = 0.9, Seed = 4 });
        Assert.Equal(sampled, generator.Generate(record.ImagePath, prompt.Instruction, new GenerationOptions { MaxNewTokens = 5, Temperature = 1.0, TopP = 0.9, Seed = 4 }));
        Assert.NotNull(beam);
    }
}

public class DemoTests
{
    [Fact]
    public void Quick_demo_writes_table_report_heatmaps_and_curves()
    {
        using var dir = new TempDirectory();
        var (code, output, error) = VlPeft.Tests.Cli.CliRunner.Run("demo", "--quick", "--out", dir.Path, "--methods", "qformer-lora-self,adalora,bottleneck-adapter", "--json");
        Assert.True(code == 0, error);
        var rows = System.Text.Json.JsonDocument.Parse(output).RootElement.GetProperty("rows").EnumerateArray()
            .Select(r => (Task: r.GetProperty("task").GetString(), Method: r.GetProperty("method").GetString(), Test: r.GetProperty("test").GetDouble(),
                Trainable: r.GetProperty("trainable").GetInt64())).ToList();
        Assert.Equal(5, rows.Count);                                   // the LaVIN row is ScienceQA's only
        Assert.Single(rows, r => r.Method == "bottleneck-adapter" && r.Task == "scienceqa");
        Assert.All(rows, r => Assert.InRange(r.Test, 0, 100));
        var ada = rows.First(r => r.Method == "adalora" && r.Task == "scienceqa");
        Assert.True(ada.Trainable > rows.First(r => r.Method == "qformer-lora-self" && r.Task == "scienceqa").Trainable);
        var lines = error.Split('\n');   // progress goes to stderr with --json
        var report = File.ReadAllText(Path.Combine(dir.Path, "report.md"));
        Assert.Contains("| scienceqa | tiny-instructblip | adalora |", report);
        Assert.Contains("| scienceqa | tiny-lavin | bottleneck-adapter |", report);
        foreach (var task in new[] { "scienceqa", "iconqa" })
        {
            Assert.True(File.Exists(Path.Combine(dir.Path, $"rank_heatmap_{task}.png")));
            Assert.StartsWith("layer,self-attention,cross-attention,FFN", File.ReadAllText(Path.Combine(dir.Path, $"rank_heatmap_{task}.csv")));
            Assert.True(File.Exists(Path.Combine(dir.Path, "runs", $"{task}-adalora", "learning_curves.png")));
        }
        Assert.Contains(lines, l => l.Contains("blind check"));
    }
}
