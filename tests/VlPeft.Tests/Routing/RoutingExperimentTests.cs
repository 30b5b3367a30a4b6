using System.Text.Json;
using TorchSharp;
using VlPeft.Data;
using VlPeft.Data.Synthetic;
using VlPeft.Data.Vqa;
using VlPeft.Evaluation.Metrics;
using VlPeft.Experiments;
using VlPeft.Models;
using VlPeft.Peft.Routing;
using VlPeft.Tests.Cli;

namespace VlPeft.Tests.Routing;

public class RoutingExperimentTests
{
    [Fact]
    public void Every_routing_experiment_file_mirrors_the_published_scripts()
    {
        var files = Directory.GetFiles(RepoPath.Of("configs", "routing"), "*.yaml");
        Assert.Equal(20, files.Length);   // per model: plain LoRA, 6 routings, cross-attention, adapter, routed adapter
        foreach (var file in files)
        {
            var config = ExperimentConfig.Load(file);
            using var model = ModelFamilies.FromPreset(config.Model.Preset!, new ModelBuildOptions { Device = torch.META });
            var plan = PeftPlan.Resolve(config.Peft, model, totalSteps: 1000, file);
            bool roberta = config.Task == "vqav2";
            Assert.Equal(roberta ? 3e-4 : 3e-5, config.Training.Lr);
            Assert.Equal(roberta ? 512 : 40, config.Training.BatchSize);
            Assert.Equal(20, config.Training.Epochs);
            Assert.Equal(0, config.Training.WeightDecay);
            Assert.Null(config.Training.Patience);
            if (plan.Peft is RoutedLoraConfig lora)
            {
                Assert.Equal(128, lora.R);
                Assert.Equal(128, lora.LoraAlpha);
                string expected = file.Contains("routed-lora-") ? Path.GetFileNameWithoutExtension(file).Split("routed-lora-")[1]
                    : file.Contains("cross-attention") ? "cross_attention" : "none";
                Assert.Equal(expected, lora.Routing);
            }
            else if (plan.Peft is VlPeft.Peft.Lora.LoraConfig plain)   // RoBERTa's plain LoRA is HF LoRA on query and value
                Assert.Equal((128, 128.0, "vqav2"), (plain.R, plain.LoraAlpha, config.Task));
            else Assert.IsType<RoutedAdapterConfig>(plan.Peft);
        }
    }

    static void WriteJson(string path, object value) => File.WriteAllText(path, JsonSerializer.Serialize(value));

    [Fact]
    public void Karpathy_vqa_reader_takes_the_label_dict_and_otherwise_scores_min_1_c_over_3()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("images"));
        File.WriteAllBytes(dir.File("images/COCO_val2014_000000000007.jpg"), new byte[] { 0xFF, 0xD8 });
        var answers = new[] { "Two", "2", "two", "3", "3", "red", "2", "2", "2", "3" };
        WriteJson(dir.File("karpathy_val.json"), new object[]
        {
            new { question_id = 7001, img_id = "COCO_val2014_000000000007", sent = "How many?", label = new Dictionary<string, double> { ["2"] = 1, ["3"] = 0.9 }, answer_type = "number" },
            new { question_id = 7002, img_id = "COCO_val2014_000000000007", sent = "How many?", answers = answers.Select(a => new { answer = a }).ToArray() },
        });
        var records = VqaKarpathyReader.Read(dir.Path, "val", new ReadOptions { RequireImages = true });
        Assert.Equal(0.9, records[0].AnswerScores!["3"]);
        Assert.Equal(dir.File("images/COCO_val2014_000000000007.jpg"), records[0].ImagePath);
        // Normalized: "Two"/"two" → "2" (6 of 10 → 1), "3" three times → 1, "red" once → 1/3.
        Assert.Equal(1.0, records[1].AnswerScores!["2"]);
        Assert.Equal(1.0, records[1].AnswerScores!["3"]);
        Assert.Equal(1 / 3.0, records[1].AnswerScores!["red"], 12);
        Assert.Equal(answers, records[1].Answers);

        WriteJson(dir.File("karpathy_test.json"), new object[] { new { question_id = 1, img_id = "COCO_val2014_000000000099", sent = "Q?", label = new { yes = 1 } } });
        var missing = Assert.Throws<BadInputException>(() => VqaKarpathyReader.Read(dir.Path, "test", new ReadOptions { RequireImages = true }));
        Assert.Contains("record 1", missing.Message);
        Assert.Contains("COCO_val2014_000000000099", missing.Message);
        WriteJson(dir.File("karpathy_train.json"), new object[] { new { question_id = 2, img_id = "x", sent = "Q?", label = new { yes = 1.5 } } });
        Assert.Contains("[0, 1]", Assert.Throws<BadInputException>(() => VqaKarpathyReader.Read(dir.Path, "train")).Message);

        WriteJson(dir.File("ans2label.json"), new Dictionary<string, int> { [""] = 0, ["yes"] = 2, ["no"] = 1 });
        Assert.Equal(new[] { "", "no", "yes" }, VqaKarpathyReader.ReadAnswerVocabulary(dir.File("ans2label.json")));
        WriteJson(dir.File("bad.json"), new Dictionary<string, int> { ["yes"] = 0, ["no"] = 0 });
        Assert.Contains("both", Assert.Throws<BadInputException>(() => VqaKarpathyReader.ReadAnswerVocabulary(dir.File("bad.json"))).Message);
    }

    [Fact]
    public void Shared_answer_vocabulary_file_has_the_3129_lxmert_answers()
    {
        var labels = VqaKarpathyReader.ReadAnswerVocabulary(SharedData.Path("vqav2", "trainval_ans2label.json"));
        Assert.Equal(3129, labels.Count);
        Assert.Equal("", labels[0]);
        Assert.Equal("yes", labels[425]);
        Assert.Equal("no", labels[1403]);
    }

    [Fact]
    public void Synthetic_vqav2_label_dicts_follow_the_annotators()
    {
        using var dir = new TempDirectory();
        var summary = SyntheticSuite.Generate(new SyntheticOptions { Task = "vqav2", Train = 40, Val = 8, Test = 8, Seed = 2 }, dir.Path);
        var vocabulary = VqaKarpathyReader.ReadAnswerVocabulary(dir.File(VqaKarpathyReader.AnswerVocabularyFile));
        foreach (var split in VqaKarpathyReader.Splits)
            foreach (var r in VqaKarpathyReader.Read(dir.Path, split, new ReadOptions { RequireImages = true }))
            {
                Assert.Equal(10, r.Answers.Count);
                foreach (var (answer, score) in r.AnswerScores!)
                {
                    int count = r.Answers.Count(a => VqaAnswerNormalizer.Vqa.Normalize(a) == answer);
                    Assert.Equal(Math.Min(1, 0.3 * count), score, 6);      // compute_softscore's 0.3 / 0.6 / 0.9 / 1
                    Assert.Contains(answer, vocabulary);
                }
            }
        Assert.InRange(summary.BlindAccuracy, summary.ChanceAccuracy, 100);
    }

    [Fact]
    public void Vqa_and_caption_runs_score_what_their_prediction_files_score()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "vqav2", Train = 24, Val = 8, Test = 8, Seed = 4 }, dir.File("vqa"));
        SyntheticSuite.Generate(new SyntheticOptions { Task = "captions", Train = 24, Val = 6, Test = 5, Seed = 4 }, dir.File("captions"));
        var vqa = new ExperimentConfig
        {
            Name = "vqa", Task = "vqav2", Data = dir.File("vqa"), Model = new ExperimentConfig.ModelSection { Path = RepoPath.Of("models", "tiny-vit-roberta-vqa") },
            Peft = new() { ["preset"] = "roberta-routed-lora", ["r"] = 4, ["routing"] = "xt_xvT_xv" },
            Training = new ExperimentConfig.TrainingSection { Epochs = 1, BatchSize = 8, Augment = false, Lr = 1e-3 },
        };
        var result = ExperimentRunner.Run(vqa, dir.File("run-vqa"));
        Assert.Equal("VQA accuracy", result.TestMetric);
        using (var doc = JsonDocument.Parse(File.ReadAllText(dir.File("run-vqa/predictions.json"))))
        {
            var predictions = doc.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("question_id").GetInt64().ToString(), e => e.GetProperty("answer").GetString()!);
            var records = VqaKarpathyReader.Read(dir.File("vqa"), "test");
            Assert.Equal(100 * records.Average(r => VqaScorer.LeaveOneOut(predictions[r.Id], r.Answers)), result.TestAccuracy!.Value, 1);
        }
        // The adapter is saved with the classifier for the data's answers: `eval` on it gives the run's test figure again.
        Assert.True(File.Exists(dir.File("run-vqa/adapter/adapter_model.safetensors")));
        File.WriteAllText(dir.File("vqa.yaml"), vqa.ToYaml());
        var eval = CliRunner.Run("eval", "--config", dir.File("vqa.yaml"), "--adapter", dir.File("run-vqa/adapter"), "--predictions-out", dir.File("vqa-results.json"));
        Assert.True(eval.ExitCode == 0, eval.Err);
        Assert.Contains($"VQA accuracy {result.TestAccuracy!.Value.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)} on 8 questions", eval.Out);
        Assert.Equal(File.ReadAllText(dir.File("run-vqa/predictions.json")), File.ReadAllText(dir.File("vqa-results.json")));

        var captions = new ExperimentConfig
        {
            Name = "cap", Task = "captions", Data = dir.File("captions"), Model = new ExperimentConfig.ModelSection { Path = RepoPath.Of("models", "tiny-vit-gpt2-captioning") },
            Peft = new() { ["preset"] = "gpt2-cross-attention", ["r"] = 4 },
            Training = new ExperimentConfig.TrainingSection { Epochs = 1, BatchSize = 8, Augment = false },
            Evaluation = new ExperimentConfig.EvaluationSection { NumBeams = 2, MaxNewTokens = 12 },
        };
        var captioned = ExperimentRunner.Run(captions, dir.File("run-cap"));
        Assert.Equal("CIDEr-D", captioned.TestMetric);
        using (var doc = JsonDocument.Parse(File.ReadAllText(dir.File("run-cap/predictions.json"))))
        {
            var predicted = doc.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("image_id").GetString()!, e => e.GetProperty("caption").GetString()!);
            var records = VlPeft.Data.Captions.CaptionReader.Read(Directory.GetFiles(dir.File("captions"), "dataset_*.json")[0], "test");
            Assert.Equal(5, predicted.Count);
            Assert.Equal(100 * (double)CaptionScorer.Score(records, predicted).Metrics["CIDEr"], captioned.TestAccuracy!.Value, 6);
        }
        File.WriteAllText(dir.File("cap.yaml"), captions.ToYaml());
        var evalCaptions = CliRunner.Run("eval", "--config", dir.File("cap.yaml"), "--adapter", dir.File("run-cap/adapter"));
        Assert.True(evalCaptions.ExitCode == 0, evalCaptions.Err);
        Assert.Contains($"CIDEr-D {captioned.TestAccuracy!.Value.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)} on 5 images", evalCaptions.Out);
    }

    [Fact]
    public void Tower_pretraining_trains_both_towers_from_scratch_and_only_a_routing_model()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "captions", Train = 24, Val = 6, Test = 2, Seed = 5 }, dir.File("captions"));
        var config = ExperimentConfig.Load(RepoPath.Of("configs", "demo", "pretrain-vit-roberta-vqa.yaml"));
        config.Data = dir.File("captions");
        config.Training.Epochs = 2;
        var result = ExperimentRunner.Run(config, dir.File("run"));
        Assert.Equal(result.TotalParameters, result.TrainableParameters);
        Assert.True(double.IsFinite(result.ValidationMetric) && result.ValidationMetric < 0);
        var vocabulary = File.ReadAllLines(dir.File("run/model/vocab.txt"));
        Assert.Contains("many", vocabulary);            // the questions' words are in the vocabulary too
        config = ExperimentConfig.Load(RepoPath.Of("configs", "demo", "pretrain.yaml"));
        config.Task = "tower_pretraining";
        config.Data = dir.File("captions");
        var error = Assert.Throws<BadInputException>(() => ExperimentRunner.Run(config, dir.File("run2")));
        Assert.Contains("routing paper", error.Message);
    }
}
