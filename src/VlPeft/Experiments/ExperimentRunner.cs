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
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Peft;
using VlPeft.Text;
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
    string RunDirectory,
    /// <summary>What <see cref="TestAccuracy"/> measures: accuracy (choice tasks), VQA accuracy, or CIDEr-D (×100, captions).</summary>
    string TestMetric = "accuracy");

/// <summary>
/// Runs an experiment file end to end: data (official formats), model (HF checkpoint directory, or a
/// fresh tiny model for pretraining), the PEFT plan, training with early stopping, test by candidate
/// ranking on the best checkpoint, and the run directory (config, metrics, TensorBoard, checkpoints,
/// adapter in HF PEFT format, report.md).
/// </summary>
public static class ExperimentRunner
{
    /// <param name="resume">Continue from the run directory's last checkpoint (there must be one).</param>
    /// <param name="overwrite">Replace a run the directory already holds; without it (or <paramref name="resume"/>) that is an error.</param>
    public static ExperimentResult Run(ExperimentConfig config, string runDirectory, bool resume = false, string source = "experiment file", bool overwrite = false)
    {
        config.Validate(source);
        var data = config.Data ?? throw new BadInputException($"no data directory: give --data or set 'data:' in the {source}");
        if (!Directory.Exists(data)) throw new BadInputException("data directory not found", data);
        var cluster = Distributed.Cluster.Current;
        cluster.RequireSame("the experiment (resolved config)", System.Text.Json.JsonSerializer.Serialize(config) + $"|resume={resume}|overwrite={overwrite}");
        var run = new RunDirectory(runDirectory);
        using var writer = cluster.IsRoot ? run.Lock() : null;   // rank 0 owns the run directory; the other ranks write nothing there
        if (cluster.IsRoot && run.HoldsRun && !resume)
        {
            if (!overwrite)
                throw new BadInputException("the run directory already holds a run (checkpoints/last): --resume continues it, --overwrite starts again", run.Path);
            run.Clear();
        }
        if (cluster.IsRoot) run.SaveConfig(config);
        cluster.Barrier();
        var memory = EstimateMemory(config, source);
        // A model built from scratch writes its tokenizer files: rank 0 into the run, the others into a scratch folder.
        string modelFolder = cluster.IsRoot || !config.Model.FromScratch ? Path.Combine(run.Path, "model") : Directory.CreateTempSubdirectory($"vlpeft-rank{cluster.Rank}-").FullName;
        var (model, processor) = LoadModel(config, data, modelFolder);
        var quantized = QuantizationPlan.Parse(config.Model.Quantize, model, source);
        using var owned = model;   // the weights, optimizer-free, go when the run ends (callers such as the demo run many in one process)
        var watch = Stopwatch.StartNew();

        // "% of baseline": every parameter outside the frozen towers (InstructBLIP: Q-Former + queries + projection), counted before adapters.
        long baseline = ModelParameterSummary.BaselineParameters(model);

        ITrainingTask task;
        Func<double?>? test = null;
        IReadOnlyDictionary<string, object>? categories = null;
        string testMetric = "accuracy";
        var t = config.Training;
        if (config.Task is "captions" or "tower_pretraining")
        {
            var json = Directory.GetFiles(data, "dataset_*.json").FirstOrDefault() ?? throw new BadInputException("no Karpathy dataset_*.json in the data directory", data);
            string vqa = Path.Combine(data, "vqa_train.json");
            var questions = File.Exists(vqa) ? VlPeft.Data.Vqa.VizWizReader.Read(vqa, data) : null;
            var trainCaptions = Limit(CaptionReader.Read(json, "train"), t.MaxTrainExamples);
            var valCaptions = Limit(CaptionReader.Read(json, "val"), t.MaxEvalExamples);
            if (config.Task == "tower_pretraining")
                task = new TowerPretrainingTask(model, processor, TokenizerOf(processor), trainCaptions, valCaptions, questions?.Select(q => q.Question).ToList() ?? new List<string>());
            else if (model is VlPeft.Models.Multimodal.VitGpt2ForCaptioning)
            {
                // The routing paper's captioner: captions only, no instruction, no contrastive term; tested by CIDEr-D of beam search.
                task = new CaptionTask(model, processor, trainCaptions, valCaptions) { Augment = t.Augment, ContrastiveWeight = 0 };
                var testCaptions = Limit(CaptionReader.Read(json, "test"), t.MaxEvalExamples);
                testMetric = "CIDEr-D";
                test = () =>
                {
                    var (scores, results) = CaptionScores(model, processor, testCaptions, config.Evaluation.Generation);
                    WritePredictions(run, System.Text.Json.JsonSerializer.Serialize(results));
                    categories = scores;
                    return 100 * Convert.ToDouble(scores["CIDEr"], CultureInfo.InvariantCulture);
                };
            }
            else
                task = new CaptionTask(model, processor, trainCaptions, valCaptions, questions) { Augment = t.Augment };
        }
        else if (config.Task == "vqav2")
        {
            var vqaProcessor = (VlPeft.Models.Multimodal.VqaClassifierProcessor)processor;
            var read = new ReadOptions { RequireImages = true };
            var testQuestions = Limit(VlPeft.Data.Vqa.VqaKarpathyReader.Read(data, "test", read), t.MaxEvalExamples);
            var vqaTask = new VqaClassificationTask(model, vqaProcessor, Limit(VlPeft.Data.Vqa.VqaKarpathyReader.Read(data, "train", read), t.MaxTrainExamples),
                Limit(VlPeft.Data.Vqa.VqaKarpathyReader.Read(data, "val", read), t.MaxEvalExamples));
            task = vqaTask;
            testMetric = "VQA accuracy";
            test = () =>
            {
                var (accuracy, results) = VqaScores(vqaTask, testQuestions);
                WritePredictions(run, System.Text.Json.JsonSerializer.Serialize(results));
                return accuracy;
            };
        }
        else
        {
            var train = Limit(ReadChoiceSplit(config, data, "train"), t.MaxTrainExamples);
            var val = Limit(ReadChoiceSplit(config, data, "val"), t.MaxEvalExamples);
            var testRecords = Limit(ReadChoiceSplit(config, data, "test"), t.MaxEvalExamples);
            var choice = new ChoiceTask(model, processor, train, val, PromptFor(config)) { Augment = t.Augment, AnswerParser = AnswerParserFor(config.Evaluation) };
            task = choice;
            test = () =>
            {
                double accuracy = config.Evaluation.Mode == "generate"
                    ? choice.GenerationAccuracy(testRecords, config.Evaluation.Generation, out var predictions)
                    : choice.Accuracy(testRecords, out predictions);
                // The official result-file shape, so `vlpeft score` can re-score it.
                WritePredictions(run, System.Text.Json.JsonSerializer.Serialize(new { results = predictions }));
                if (config.Task == "scienceqa") categories = ScienceQaScorer.Score(testRecords, predictions).Metrics;
                return accuracy;
            };
        }

        var peft = ApplyPlan(model, config, task.TrainCount, source);
        var report = ParameterReport.Of(model);
        var trainer = new Trainer(model, peft, task, config.Training.ToOptions(task.TrainCount, LrGroupPrefixes(model, config.Training.LrGroups, source)), run);
        var result = trainer.Run(resume);
        model.eval();
        double? testAccuracy;
        using (torch.no_grad()) testAccuracy = test?.Invoke();

        var ranks = peft?.Tuner().Ranks();
        var experiment = new ExperimentResult(config.Name, PlanName(config), report.Total, report.Trainable,
            baseline == 0 ? 0 : 100.0 * report.Trainable / baseline, result.State.BestMetric ?? double.NaN, testAccuracy, categories,
            watch.Elapsed.TotalSeconds, result.SamplesPerSecond, ranks, run.Path, testMetric);
        if (cluster.IsRoot)
        {
            if (peft != null) PeftFiles.SaveAll(peft, run.AdapterDirectory);
            else SaveFullModel(model, Path.Combine(run.Path, "model"), config.Model.FromScratch ? null : config.Model.Path);
            File.WriteAllText(run.ReportFile, Report(experiment, result.State)
                + (memory is null ? "" : $"\nMemory estimate before the run: {memory.Describe(config.Training.BatchSize)}.\n")
                + (cluster.IsDistributed ? $"\nData parallel over {cluster.Size} MPI ranks.\n" : "")
                + (quantized.Count > 0 ? $"\nQuantized frozen linear weights{(config.Model.QuantizeEmbeddings ? " and token tables" : "")}: {string.Join(", ", quantized.Select(q => $"{q.Key} {q.Value}"))}.\n" : ""));
        }
        cluster.Barrier();   // the adapter is on disk when any rank returns
        return experiment;
    }

    /// <summary>The official results file of the test split (rank 0 writes it).</summary>
    static void WritePredictions(RunDirectory run, string json)
    {
        if (Distributed.Cluster.Current.IsRoot) File.WriteAllText(Path.Combine(run.Path, "predictions.json"), json);
    }

    /// <summary>
    /// The run's memory estimate (<see cref="MemoryEstimate"/>), from the model built on the meta device with the plan applied,
    /// printed; a run that needs more than the machine has available is refused before any weight is read
    /// (VLPEFT_MEMORY_CHECK=0 runs it anyway). Null when the model directory is missing (the loader says so next).
    /// </summary>
    public static MemoryEstimate? EstimateMemory(ExperimentConfig config, string source)
    {
        var m = config.Model;
        string? directory = m.FromScratch ? null : m.Path is string p && File.Exists(Path.Combine(p, "config.json")) ? p : null;
        if (!m.FromScratch && directory is null) return null;
        var meta = new ModelBuildOptions { Device = torch.META };
        using var model = directory is null ? ModelFamilies.FromPreset(m.Preset ?? "tiny-instructblip", meta) : ModelFamilies.FromConfigFile(directory, meta);
        var targets = QuantizationPlan.Targets(model, QuantizationPlan.Parse(m.Quantize, model, "model.quantize"), m.QuantizeEmbeddings);
        PeftPlan.Resolve(config.Peft, model, totalSteps: 1000, source).Apply(model);
        var estimate = MemoryEstimate.Of(model, config.Training.BatchSize, m.Dtype == "bf16",
            name => name.EndsWith(".weight", StringComparison.Ordinal) ? targets.GetValueOrDefault(name[..^7]) : null);
        long available = MemoryEstimate.AvailableBytes();
        Log.Info($"memory estimate: {estimate.Describe(config.Training.BatchSize)}; available {MemoryEstimate.Gb(available)}");
        int ranksHere = Distributed.Cluster.Current.RanksOnThisMachine;   // each MPI rank on this machine holds its own copy
        if (ranksHere > 1) Log.Info($"memory estimate × {ranksHere} ranks on this machine: {MemoryEstimate.Gb(estimate.TotalBytes * ranksHere)}");
        if (estimate.TotalBytes * ranksHere > available && Environment.GetEnvironmentVariable("VLPEFT_MEMORY_CHECK") != "0")
            throw new BadInputException($"the run needs about {MemoryEstimate.Gb(estimate.TotalBytes * ranksHere)}{(ranksHere > 1 ? $" for {ranksHere} ranks" : "")} ({estimate.Describe(config.Training.BatchSize)}) but {MemoryEstimate.Gb(available)} is available: " +
                "lower training.batch_size, set model.dtype: bf16, or train fewer parameters (VLPEFT_MEMORY_CHECK=0 runs it anyway)", source);
        return estimate;
    }

    /// <summary>
    /// Evaluates a trained adapter (or a plain model) on a split by candidate ranking; returns the
    /// accuracy, the ScienceQA categories where applicable, and the predictions (id → choice index).
    /// </summary>
    public static (double Accuracy, IReadOnlyDictionary<string, object>? Categories, Dictionary<string, int> Predictions) Evaluate(
        ExperimentConfig config, string? adapterDirectory, string split = "test", Evaluation.GenerationOptions? generation = null)
    {
        generation?.Validate();
        var data = config.Data ?? throw new BadInputException("no data directory: give --data or set 'data:' in the experiment file");
        if (config.Task is not ("scienceqa" or "iconqa")) throw new BadInputException($"eval ranks answer candidates; task '{config.Task}' has none");
        var (model, processor) = LoadModel(config, data, modelFolder: null);
        if (adapterDirectory != null) LoadAdapter(model, adapterDirectory);
        var records = ReadChoiceSplit(config, data, split);
        var task = new ChoiceTask(model, processor, Array.Empty<ChoiceRecord>(), Array.Empty<ChoiceRecord>(), PromptFor(config)) { AnswerParser = AnswerParserFor(config.Evaluation) };
        generation ??= config.Evaluation.Mode == "generate" ? config.Evaluation.Generation : null;
        double accuracy;
        Dictionary<string, int> predictions;
        using (torch.no_grad())
            accuracy = generation is null ? task.Accuracy(records, out predictions) : task.GenerationAccuracy(records, generation, out predictions);
        return (accuracy, config.Task == "scienceqa" ? ScienceQaScorer.Score(records, predictions).Metrics : null, predictions);
    }

    /// <summary>Loads a checkpoint directory and its tokenizers for one-off use (predict, eval).</summary>
    public static (VisionLanguageModel Model, VisionLanguageProcessor Processor) LoadForInference(string modelDirectory, string? adapterDirectory, string? quantize = null,
        bool quantizeEmbeddings = false)
    {
        var (model, processor) = PretrainedModel.LoadWithProcessor(modelDirectory, new PretrainedOptions { Quantize = quantize, QuantizeEmbeddings = quantizeEmbeddings });
        if (adapterDirectory != null) LoadAdapter(model, adapterDirectory);
        return (model, processor);
    }

    /// <summary>Beam-searched captions of the images, scored by the official caption metrics; the COCO results file shape.</summary>
    static (IReadOnlyDictionary<string, object> Metrics, object Results) CaptionScores(VisionLanguageModel model, VisionLanguageProcessor processor,
        IReadOnlyList<CaptionRecord> records, Evaluation.GenerationOptions options)
    {
        var generator = new Evaluation.TextGenerator(model, processor);
        var generated = Distributed.Cluster.Current.MapChunks(records, 8, chunk => chunk.Select(r => generator.Generate(r.ImagePath, "", options)).ToList());
        var captions = records.Select((r, i) => (r.ImageId, Caption: generated[i])).ToDictionary(x => x.ImageId, x => x.Caption);
        return (CaptionScorer.Score(records, captions).Metrics, captions.Select(kv => new { image_id = kv.Key, caption = kv.Value }).ToList());
    }

    /// <summary>VQA accuracy of the classifier's argmax answers; the official results file shape [{question_id, answer}].</summary>
    static (double Accuracy, object Results) VqaScores(VqaClassificationTask task, IReadOnlyList<OpenQuestionRecord> records)
    {
        double accuracy = task.Accuracy(records, out var answers);
        return (accuracy, answers.Select(kv => new { question_id = long.TryParse(kv.Key, out long id) ? (object)id : kv.Key, answer = kv.Value }).ToList());
    }

    /// <summary>
    /// Evaluates the routing paper's models on a split: VQA accuracy (vqav2) or CIDEr-D ×100 of beam-searched captions
    /// (captions), with the official results file's content and the number of records.
    /// </summary>
    public static (double Score, string Metric, int Count, object Results) EvaluateOpen(ExperimentConfig config, string? adapterDirectory, string split = "test")
    {
        var data = config.Data ?? throw new BadInputException("no data directory: give --data or set 'data:' in the experiment file");
        if (config.Task is not ("vqav2" or "captions")) throw new BadInputException($"task '{config.Task}' is scored by candidate ranking, not here");
        var (model, processor) = LoadModel(config, data, modelFolder: null);
        using var owned = model;
        if (adapterDirectory != null) LoadAdapter(model, adapterDirectory);
        model.eval();
        using var _ = torch.no_grad();
        if (config.Task == "vqav2")
        {
            var records = VlPeft.Data.Vqa.VqaKarpathyReader.Read(data, split, new ReadOptions { RequireImages = true });
            var task = new VqaClassificationTask(model, (VlPeft.Models.Multimodal.VqaClassifierProcessor)processor, Array.Empty<OpenQuestionRecord>(), Array.Empty<OpenQuestionRecord>());
            var (accuracy, results) = VqaScores(task, records);
            return (accuracy, "VQA accuracy", records.Count, results);
        }
        if (model is not VlPeft.Models.Multimodal.VitGpt2ForCaptioning) throw new BadInputException($"eval of task captions generates with the routing paper's captioner; the model is {model.ModelType}");
        var json = Directory.GetFiles(data, "dataset_*.json").FirstOrDefault() ?? throw new BadInputException("no Karpathy dataset_*.json in the data directory", data);
        var captions = CaptionReader.Read(json, split);
        var (metrics, captionResults) = CaptionScores(model, processor, captions, config.Evaluation.Generation);
        return (100 * Convert.ToDouble(metrics["CIDEr"], CultureInfo.InvariantCulture), "CIDEr-D", captions.Count, captionResults);
    }

    static VlPeft.Text.Tokenizers.TextTokenizer TokenizerOf(VisionLanguageProcessor processor) => processor switch
    {
        VlPeft.Models.Multimodal.VqaClassifierProcessor p => p.Tokenizer,
        VlPeft.Models.Multimodal.CaptioningProcessor p => p.Tokenizer,
        _ => throw new BadInputException("task tower_pretraining is for the routing paper's models (vit_roberta_vqa, vit_gpt2_captioning)"),
    };

    static IReadOnlyList<T> Limit<T>(IReadOnlyList<T> items, int? max) => max is int m && items.Count > m ? items.Take(m).ToList() : items;

    internal static IReadOnlyList<ChoiceRecord> ReadChoiceSplit(ExperimentConfig config, string data, string split)
    {
        var records = config.Task switch
        {
            "scienceqa" => ScienceQaReader.Read(data, split, config.ImageOnly, new ReadOptions { RequireImages = true }).Records,
            "iconqa" => IconQaReader.Read(data, split, new ReadOptions { RequireImages = true }).Records,
            _ => throw new BadInputException($"unknown task '{config.Task}' ({string.Join(", ", ExperimentConfig.Tasks)})"),
        };
        // HasImage stays as read, so the ScienceQA categories (IMG, NO) still group the same records.
        return config.TextOnly ? records.Select(r => r with { ImagePath = null }).ToList() : records;
    }

    /// <summary>The prompt of a multiple-choice task: the InstructBLIP PEFT templates or LaVIN's QCM-ALE.</summary>
    static Func<ChoiceRecord, PromptExample> PromptFor(ExperimentConfig config) =>
        config.Prompt == ExperimentConfig.LavinPrompt ? ScienceQaPrompts.Lavin
        : config.Task == "iconqa" ? InstructBlipPeftPrompts.IconQa : InstructBlipPeftPrompts.ScienceQa;

    /// <summary>Generated text → choice under the experiment's answer rule (the ScienceQA rules fall back to a seeded random choice).</summary>
    static Func<string, ChoiceRecord, int> AnswerParserFor(ExperimentConfig.EvaluationSection evaluation)
    {
        if (evaluation.AnswerRule == "choice") return (text, r) => Evaluation.ChoiceAnswerParser.Parse(text, r.Choices);
        var rule = Enum.Parse<ScienceQaAnswerRule>(evaluation.AnswerRule, ignoreCase: true);
        var parser = new ScienceQaAnswerParser(rule, evaluation.Seed);
        return (text, r) => parser.Parse(text, r.Choices.Count);
    }

    /// <param name="modelFolder">Where a model built from scratch keeps its tokenizer files (required then).</param>
    internal static (VisionLanguageModel, VisionLanguageProcessor) LoadModel(ExperimentConfig config, string data, string? modelFolder)
    {
        var m = config.Model;
        VisionLanguageModel model;
        VisionLanguageProcessor processor;
        if (m.FromScratch)
        {
            // A new tiny model with a vocabulary made from the captions of this data.
            string folder = modelFolder ?? throw new InvalidOperationException("a model built from scratch needs a folder for its tokenizer");
            // Questions too (VizWiz-format vqa_train.json beside the captions), for models whose later task asks them.
            var captions = Directory.GetFiles(data, "dataset_*.json").SelectMany(f => CaptionReader.Read(f, "train").SelectMany(r => r.References))
                .Concat(Directory.GetFiles(data, "vqa_train.json").SelectMany(f => VlPeft.Data.Vqa.VizWizReader.Read(f).Select(q => q.Question)));
            string presetJson = ModelPresets.Json(m.Preset ?? "tiny-instructblip");
            torch.manual_seed(config.Training.Seed);
            var vocabulary = TinyVocabulary.Build(captions);
            (model, processor) = ModelFamilies.ForType(ModelFamilies.ModelTypeOf(presetJson, "preset")).CreateFromScratch(presetJson, vocabulary, folder);
        }
        else
        {
            string path = m.Path ?? throw new BadInputException("no model directory: give --model or set 'model: path:' in the experiment file");
            if (!Directory.Exists(path)) throw new BadInputException("model directory not found (the paper configurations need the HF checkpoint, e.g. Salesforce/instructblip-flan-t5-xl, downloaded beforehand)", path);
            (model, processor) = PretrainedModel.LoadWithProcessor(path, new PretrainedOptions { Quantize = m.Quantize, QuantizeEmbeddings = m.QuantizeEmbeddings });
            if (m.Preset is string expected && ModelPresets.Names.Contains(expected) && !expected.StartsWith("tiny"))
                CheckMatchesPreset(model, expected, path);
        }
        if (config.Task == "vqav2")
        {
            var vqa = model as VlPeft.Models.Multimodal.VitRobertaForVqa ?? throw new BadInputException($"task vqav2 trains the routing paper's answer classifier (vit_roberta_vqa); the model is {model.ModelType}");
            var labels = VlPeft.Data.Vqa.VqaKarpathyReader.ReadAnswerVocabulary(Path.Combine(data, VlPeft.Data.Vqa.VqaKarpathyReader.AnswerVocabularyFile));
            if (!labels.SequenceEqual(vqa.Config.Id2Label))
            {
                // A head for this data's answer vocabulary (the base's head answers another set), seeded as the run.
                torch.manual_seed(config.Training.Seed);
                model = vqa.WithAnswers(labels);
                vqa.Dispose();
                processor = ((VlPeft.Models.Multimodal.VqaClassifierProcessor)processor).WithConfig(((VlPeft.Models.Multimodal.VitRobertaForVqa)model).Config);
            }
        }
        if (m.Dtype == "bf16")
            foreach (var tower in model.ParameterGroups.Where(g => g.FrozenTower).SelectMany(g => g.Prefixes))
                model.named_modules().FirstOrDefault(x => x.name == tower).module?.to(ScalarType.BFloat16); // adapters attached later stay fp32
        if (m.FromScratch) QuantizationPlan.Apply(model, QuantizationPlan.Parse(m.Quantize, model, "model.quantize"), m.QuantizeEmbeddings);   // loaded ones were quantized while loading
        return (model, processor);
    }

    /// <summary>The checkpoint must have the preset's architecture (same parameter names), e.g. not a Vicuna LM where Flan-T5 is expected.</summary>
    static void CheckMatchesPreset(VisionLanguageModel model, string preset, string path)
    {
        using var expected = ModelFamilies.FromPreset(preset, new ModelBuildOptions { Device = torch.META });
        var want = expected.named_parameters().Select(p => p.name).ToHashSet();
        var have = model.named_parameters().Select(p => p.name).ToHashSet();
        if (expected.ModelType != model.ModelType || !want.SetEquals(have))
            throw new BadInputException($"the checkpoint is a {model.ModelType} model whose modules differ from the preset {preset} the experiment expects (e.g. '{want.Except(have).Concat(have.Except(want)).FirstOrDefault()}')", path);
    }

    /// <summary>
    /// The experiment's PEFT plan (<see cref="PeftPlan"/>), attached after seeding torch with the run's seed so adapter
    /// initialisation is reproducible. Base parameters trained in full inside a bf16 tower go back to fp32.
    /// </summary>
    static PeftModel? ApplyPlan(VisionLanguageModel model, ExperimentConfig config, int trainCount, string source)
    {
        var t = config.Training;
        var plan = PeftPlan.Resolve(config.Peft, model, t.TotalSteps(trainCount), source);
        PeftConfig Describe(PeftConfig c) => c with { BaseModelNameOrPath = config.Model.Path ?? config.Model.Preset, TaskType = model.PeftTaskType };
        if (plan.Peft is { } peftConfig)
            plan = plan with { Peft = Describe(peftConfig), MoreAdapters = plan.MoreAdapters.Select(a => (a.Name, Describe(a.Config))).ToList() };
        torch.manual_seed(t.Seed);
        var peft = plan.Apply(model);
        QuantizationPlan.RefuseTrainingQuantized(model, source);
        KeepInFp32(model, model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name));
        return peft;
    }

    /// <summary>
    /// Base parameters trained in full inside a bf16 tower (the ViT's post_layernorm) live in fp32, in training and
    /// when a trained adapter is loaded for evaluation, so evaluation sees the weights training produced.
    /// </summary>
    static void KeepInFp32(VisionLanguageModel model, IEnumerable<string> parameterNames)
    {
        var reduced = model.named_parameters().Where(p => p.parameter.dtype == ScalarType.BFloat16).Select(p => p.name).ToHashSet();
        var owners = parameterNames.Where(n => reduced.Contains(n) && n.Contains('.')).Select(n => n[..n.LastIndexOf('.')]).Distinct().ToList();
        foreach (var owner in owners)
            model.named_modules().First(x => x.name == owner).module.to(ScalarType.Float32);
    }

    static void LoadAdapter(VisionLanguageModel model, string adapterDirectory)
    {
        KeepInFp32(model, PeftFiles.SavedBaseParameters(model, adapterDirectory));
        PeftFiles.LoadAll(model, adapterDirectory);
    }

    static string PlanName(ExperimentConfig config) =>
        config.Peft.GetValueOrDefault(PeftPlan.PresetKey)?.ToString() ?? config.Peft.GetValueOrDefault("peft_type")?.ToString()?.ToLowerInvariant() ?? "peft";

    /// <summary>lr_groups (group name → learning rate, values checked with the other training numbers) as parameter path prefixes.</summary>
    static IReadOnlyDictionary<string, double>? LrGroupPrefixes(VisionLanguageModel model, IReadOnlyDictionary<string, double>? groups, string source)
    {
        if (groups is null) return null;
        var result = new Dictionary<string, double>();
        foreach (var (name, lr) in groups)
        {
            var group = model.ParameterGroups.FirstOrDefault(g => g.Name == name)
                ?? throw new BadInputException($"lr_groups: '{name}' is not a parameter group of {model.ModelType} ({string.Join(", ", model.ParameterGroups.Select(g => g.Name))})", source);
            foreach (var prefix in group.Prefixes) result[prefix] = lr;
        }
        return result;
    }

    /// <summary>A fully trained model as a checkpoint directory, with the tokenizer files of its base (a model built from scratch has them already).</summary>
    static void SaveFullModel(VisionLanguageModel model, string folder, string? baseDirectory)
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
        s.AppendLine($"| {r.Method} | {r.TotalParameters:N0} | {r.TrainableParameters:N0} | {F(r.TrainablePercentOfBaseline)} | {F(r.ValidationMetric)} | {F(r.TestAccuracy)} ({r.TestMetric}) | {state.Epoch} | {F(r.Seconds)} | {F(r.SamplesPerSecond)} |");
        if (r.TestMetric == "CIDEr-D" && r.TestCategories is { } captions)
        {
            s.AppendLine();
            s.AppendLine("| " + string.Join(" | ", captions.Keys.Where(k => k != "skipped")) + " |");
            s.AppendLine("|" + string.Concat(captions.Keys.Where(k => k != "skipped").Select(_ => "---|")));
            s.AppendLine("| " + string.Join(" | ", captions.Where(kv => kv.Key != "skipped").Select(kv => F(Convert.ToDouble(kv.Value, CultureInfo.InvariantCulture) * 100))) + " |");
        }
        else if (r.TestCategories is { } c)
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
