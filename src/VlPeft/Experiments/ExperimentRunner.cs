using System.Diagnostics;
using System.Globalization;
using System.Text;
using TorchSharp;
using VlPeft.Analysis;
using VlPeft.Data;
using VlPeft.Data.Captions;
using VlPeft.Data.IconQa;
using VlPeft.Data.ScienceQa;
using VlPeft.Evaluation.Metrics;
using VlPeft.Imaging;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Peft;
using VlPeft.Peft.AdaLora;
using VlPeft.Text;
using VlPeft.Text.Tokenizers;
using VlPeft.Training;
using static TorchSharp.torch;

namespace VlPeft.Experiments;

/// <summary>What one experiment produced.</summary>
public sealed record ExperimentResult(
    string Name,
    string Method,
    long TotalParameters,
    long TrainableParameters,
    double TrainablePercentOfBaseline,
    double ValidationMetric,
    double? TestAccuracy,
    IReadOnlyDictionary<string, object>? TestCategories,
    double Seconds,
    double SamplesPerSecond,
    IReadOnlyDictionary<string, int>? FinalRanks,
    string RunDirectory);

/// <summary>
/// Runs an experiment file end to end: data (official formats), model (HF checkpoint directory, or a
/// fresh tiny model for pretraining), the PEFT plan, training with early stopping, test by candidate
/// ranking on the best checkpoint, and the run directory (config, metrics, TensorBoard, checkpoints,
/// adapter in HF PEFT format, report.md).
/// </summary>
public static class ExperimentRunner
{
    public static ExperimentResult Run(ExperimentConfig config, string runDirectory, bool resume = false, string source = "experiment file")
    {
        var data = config.Data ?? throw new BadInputException($"no data directory: give --data or set 'data:' in the {source}");
        if (!Directory.Exists(data)) throw new BadInputException("data directory not found", data);
        var run = new RunDirectory(runDirectory);
        run.SaveConfig(config);
        var (model, processor) = LoadModel(config, data, Path.Combine(run.Path, "model"));
        var watch = Stopwatch.StartNew();

        // The baseline for "% of baseline" is the full Q-Former + query tokens + projection, counted before adapters.
        var before = ParameterReport.Of(model).Components.ToDictionary(c => c.Name, c => c.Total);
        long baseline = new[] { "qformer", "query_tokens", "language_projection" }.Sum(n => before.GetValueOrDefault(n));

        ITrainingTask task;
        Func<double?>? test = null;
        IReadOnlyDictionary<string, object>? categories = null;
        if (config.Task == "captions")
        {
            var json = Directory.GetFiles(data, "dataset_*.json").FirstOrDefault() ?? throw new BadInputException("no Karpathy dataset_*.json in the data directory", data);
            string vqa = Path.Combine(data, "vqa_train.json");
            var questions = File.Exists(vqa) ? VlPeft.Data.Vqa.VizWizReader.Read(vqa, data) : null;
            task = new CaptionTask(model, processor, Limit(CaptionReader.Read(json, "train"), config.Training.MaxTrainExamples),
                Limit(CaptionReader.Read(json, "val"), config.Training.MaxEvalExamples), questions) { Augment = config.Training.Augment };
        }
        else
        {
            var t = config.Training;
            var train = Limit(ReadChoiceSplit(config, data, "train"), t.MaxTrainExamples);
            var val = Limit(ReadChoiceSplit(config, data, "val"), t.MaxEvalExamples);
            var testRecords = Limit(ReadChoiceSplit(config, data, "test"), t.MaxEvalExamples);
            var choice = new ChoiceTask(model, processor, train, val, PromptFor(config.Task)) { Augment = t.Augment };
            task = choice;
            test = () =>
            {
                double accuracy = choice.Accuracy(testRecords, out var predictions);
                // The official result-file shape, so `vlpeft score` can re-score it.
                File.WriteAllText(Path.Combine(run.Path, "predictions.json"), System.Text.Json.JsonSerializer.Serialize(new { results = predictions }));
                if (config.Task == "scienceqa") categories = ScienceQaScorer.Score(testRecords, predictions).Metrics;
                return accuracy;
            };
        }

        var peft = ApplyPlan(model, config, task.TrainCount);
        var report = ParameterReport.Of(model);
        var trainer = new Trainer(model, peft, task, config.Training.ToOptions(), run);
        var result = trainer.Run(resume);
        model.eval();
        double? testAccuracy;
        using (torch.no_grad()) testAccuracy = test?.Invoke();

        if (peft != null) PeftFiles.Save(peft, run.AdapterDirectory);
        else SaveFullModel(model, Path.Combine(run.Path, "model"), config.Model.FromScratch ? null : config.Model.Path);
        var ranks = peft?.Allocator()?.FinalRanks();
        var experiment = new ExperimentResult(config.Name, config.Peft.Method, report.Total, report.Trainable,
            baseline == 0 ? 0 : 100.0 * report.Trainable / baseline, result.State.BestMetric ?? double.NaN, testAccuracy, categories,
            watch.Elapsed.TotalSeconds, result.SamplesPerSecond, ranks, run.Path);
        File.WriteAllText(run.ReportFile, Report(experiment, result.State));
        return experiment;
    }

    /// <summary>
    /// Evaluates a trained adapter (or a plain model) on a split by candidate ranking; returns the
    /// accuracy, the ScienceQA categories where applicable, and the predictions (id → choice index).
    /// </summary>
    public static (double Accuracy, IReadOnlyDictionary<string, object>? Categories, Dictionary<string, int> Predictions) Evaluate(
        ExperimentConfig config, string? adapterDirectory, string split = "test", Evaluation.GenerationOptions? generation = null)
    {
        var data = config.Data ?? throw new BadInputException("no data directory: give --data or set 'data:' in the experiment file");
        if (config.Task is not ("scienceqa" or "iconqa")) throw new BadInputException($"eval ranks answer candidates; task '{config.Task}' has none");
        var (model, processor) = LoadModel(config, data, modelFolder: null);
        if (adapterDirectory != null) PeftFiles.Load(model, adapterDirectory);
        var records = ReadChoiceSplit(config, data, split);
        var task = new ChoiceTask(model, processor, Array.Empty<ChoiceRecord>(), Array.Empty<ChoiceRecord>(), PromptFor(config.Task));
        double accuracy;
        Dictionary<string, int> predictions;
        using (torch.no_grad())
            accuracy = generation is null ? task.Accuracy(records, out predictions) : task.GenerationAccuracy(records, generation, out predictions);
        return (accuracy, config.Task == "scienceqa" ? ScienceQaScorer.Score(records, predictions).Metrics : null, predictions);
    }

    /// <summary>Loads a checkpoint directory and its tokenizers for one-off use (predict, eval).</summary>
    public static (BlipForConditionalGeneration Model, BlipProcessor Processor) LoadForInference(string modelDirectory, string? adapterDirectory)
    {
        var config = new ExperimentConfig { Model = new ExperimentConfig.ModelSection { Path = modelDirectory } };
        var (model, processor) = LoadModel(config, modelDirectory, modelFolder: null);
        if (adapterDirectory != null) PeftFiles.Load(model, adapterDirectory);
        return (model, processor);
    }

    static IReadOnlyList<T> Limit<T>(IReadOnlyList<T> items, int? max) => max is int m && items.Count > m ? items.Take(m).ToList() : items;

    internal static IReadOnlyList<ChoiceRecord> ReadChoiceSplit(ExperimentConfig config, string data, string split)
    {
        var records = config.Task switch
        {
            "scienceqa" => ScienceQaReader.Read(data, split, config.ImageOnly, new ReadOptions { RequireImages = true }).Records,
            "iconqa" => IconQaReader.Read(data, split, new ReadOptions { RequireImages = true }).Records,
            _ => throw new BadInputException($"unknown task '{config.Task}' (scienceqa, iconqa, captions)"),
        };
        // HasImage stays as read, so the ScienceQA categories (IMG, NO) still group the same records.
        return config.TextOnly ? records.Select(r => r with { ImagePath = null }).ToList() : records;
    }

    /// <summary>The InstructBLIP PEFT prompt of a multiple-choice task.</summary>
    static Func<ChoiceRecord, PromptExample> PromptFor(string task) =>
        task == "iconqa" ? InstructBlipPeftPrompts.IconQa : InstructBlipPeftPrompts.ScienceQa;

    /// <param name="modelFolder">Where a model built from scratch keeps its tokenizer files (required then).</param>
    static (BlipForConditionalGeneration, BlipProcessor) LoadModel(ExperimentConfig config, string data, string? modelFolder)
    {
        var m = config.Model;
        BlipForConditionalGeneration model;
        TextTokenizer lm, qformer;
        if (m.FromScratch)
        {
            // A new tiny model with a vocabulary made from the synthetic corpus and this data.
            string folder = modelFolder ?? throw new InvalidOperationException("a model built from scratch needs a folder for its tokenizer");
            Directory.CreateDirectory(Path.Combine(folder, "qformer_tokenizer"));
            var captions = Directory.GetFiles(data, "dataset_*.json").SelectMany(f => CaptionReader.Read(f, "train").SelectMany(r => r.References));
            var vocab = TinyVocabulary.Build(captions);
            WordPieceVocabulary.Write(Path.Combine(folder, "vocab.txt"), vocab);
            WordPieceVocabulary.Write(Path.Combine(folder, "qformer_tokenizer", "vocab.txt"), vocab);
            File.WriteAllText(Path.Combine(folder, "qformer_tokenizer", "added_tokens.json"), $"{{\"[DEC]\": {vocab.Count}}}");
            File.WriteAllText(Path.Combine(folder, "qformer_tokenizer", "tokenizer_config.json"), "{\"truncation_side\": \"left\"}");
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), "{\"truncation_side\": \"left\"}");
            var preset = ModelPresets.Get(m.Preset ?? "tiny-instructblip");
            var modelConfig = preset with
            {
                QFormer = preset.QFormer with { VocabSize = vocab.Count + 1 },
                Text = preset.Text with { VocabSize = vocab.Count, EosTokenId = 3, PadTokenId = 0, DecoderStartTokenId = 0 },
            };
            torch.manual_seed(config.Training.Seed);
            model = VisionLanguageModels.Create(modelConfig);
            lm = TextTokenizer.FromDirectory(folder);
            qformer = TextTokenizer.FromDirectory(Path.Combine(folder, "qformer_tokenizer"));
        }
        else
        {
            string path = m.Path ?? throw new BadInputException("no model directory: give --model or set 'model: path:' in the experiment file");
            if (!Directory.Exists(path)) throw new BadInputException("model directory not found (the paper configurations need the HF checkpoint, e.g. Salesforce/instructblip-flan-t5-xl, downloaded beforehand)", path);
            var options = new PretrainedOptions { DType = null };
            model = PretrainedModel.Load(path, options);
            if (m.Preset is string expected && ModelPresets.Names.Contains(expected) && !expected.StartsWith("tiny"))
            {
                var want = ModelPresets.Get(expected);
                if (want.Text.ModelType != model.Config.Text.ModelType)
                    throw new BadInputException($"the checkpoint holds a {model.Config.Text.ModelType} LM but the experiment expects {expected}", path);
            }
            lm = TextTokenizer.FromDirectory(path);
            string qPath = Path.Combine(path, "qformer_tokenizer");
            qformer = Directory.Exists(qPath) ? TextTokenizer.FromDirectory(qPath) : lm;
        }
        if (m.Dtype == "bf16")
            foreach (var (name, child) in model.named_children())
                if (name is "vision_model" or "language_model") child.to(ScalarType.BFloat16); // frozen towers; adapters stay fp32
        var images = new ImagePipeline(model.Config.Vision.ImageSize, ImageNormalization.Clip);
        return (model, new BlipProcessor(lm, model.Config.IsInstructBlip ? qformer : null, images, model.Config.DecoderOnly));
    }

    /// <summary>The experiment's PEFT plan; "full" trains everything, "adalora" adapts the Q-Former sublayers with AdaLoRA.</summary>
    static PeftModel? ApplyPlan(BlipForConditionalGeneration model, ExperimentConfig config, int trainCount)
    {
        var p = config.Peft;
        if (p.Method == "full")
        {
            foreach (var (_, param) in model.named_parameters()) param.requires_grad = true;
            return null;
        }
        if (p.Method == "adalora")
        {
            var t = config.Training;
            int microBatches = (trainCount + t.BatchSize - 1) / t.BatchSize;
            int total = (microBatches + t.GradientAccumulation - 1) / t.GradientAccumulation * t.Epochs;
            var regex = ((Peft.Lora.LoraConfig)PeftPresets.Get("qformer-lora-all", model.Config).Peft!).TargetModules!;
            var ada = new AdaLoraConfig
            {
                TargetModules = regex, InitR = p.InitR, TargetR = p.TargetR, Tinit = p.Tinit, Tfinal = p.Tfinal, DeltaT = p.DeltaT,
                TotalStep = total, LoraAlpha = 8,
            };
            var peft = PeftModel.Create(model, ada);
            peft.TrainInFull(new[] { "query_tokens", "language_projection" });
            return peft;
        }
        return PeftPresets.Get(p.Method, model.Config, p.Rank).Apply(model);
    }

    /// <summary>A fully trained model as a checkpoint directory, with the tokenizer files of its base (a model built from scratch has them already).</summary>
    static void SaveFullModel(BlipForConditionalGeneration model, string folder, string? baseDirectory)
    {
        PretrainedModel.Save(model, folder);
        if (baseDirectory is not null) PretrainedModel.CopyAuxiliaryFiles(baseDirectory, folder);
    }

    static string Report(ExperimentResult r, TrainerState state)
    {
        var s = new StringBuilder();
        string F(double? v) => v is double d && double.IsFinite(d) ? d.ToString("F2", CultureInfo.InvariantCulture) : "-";
        s.AppendLine($"# {r.Name}");
        s.AppendLine();
        s.AppendLine("| method | total params | trainable | % of baseline | best val | test acc | epochs | time (s) | samples/s |");
        s.AppendLine("|---|---|---|---|---|---|---|---|---|");
        s.AppendLine($"| {r.Method} | {r.TotalParameters:N0} | {r.TrainableParameters:N0} | {F(r.TrainablePercentOfBaseline)} | {F(r.ValidationMetric)} | {F(r.TestAccuracy)} | {state.Epoch} | {F(r.Seconds)} | {F(r.SamplesPerSecond)} |");
        if (r.TestCategories is { } c)
        {
            s.AppendLine();
            s.AppendLine("| " + string.Join(" | ", ScienceQaScorer.Columns.Select(x => x.Label)) + " |");
            s.AppendLine("|" + string.Concat(ScienceQaScorer.Columns.Select(_ => "---|")));
            s.AppendLine("| " + string.Join(" | ", ScienceQaScorer.Columns.Select(x => c[x.Key].ToString())) + " |");
        }
        s.AppendLine();
        s.AppendLine($"Validation by epoch: {string.Join(", ", state.ValidationHistory.Select(v => F(v)))}; best epoch {state.BestEpoch + 1}.");
        return s.ToString();
    }
}
