using System.Globalization;
using System.Text;
using VlPeft.Analysis;
using VlPeft.Data.Synthetic;

namespace VlPeft.Experiments;

/// <summary>Settings of <c>vlpeft demo</c>.</summary>
public sealed record DemoOptions
{
    public required string Output { get; init; }
    /// <summary>The pretrained tiny InstructBLIP (default: models/tiny-instructblip beside the program or the working directory).</summary>
    public string? BaseModel { get; init; }
    /// <summary>The pretrained tiny LaVIN-style base (default: models/tiny-lavin).</summary>
    public string? LavinBaseModel { get; init; }
    /// <summary>About two minutes: the full training set, 3 epochs, smaller evaluation splits and fewer methods.</summary>
    public bool Quick { get; init; }
    /// <summary>Null: every method (<see cref="DefaultMethods"/>), or <see cref="QuickMethods"/> in quick mode.</summary>
    public IReadOnlyList<string>? Methods { get; init; }

    /// <summary>
    /// The routing paper's rows (tiny ViT + RoBERTa classifier on VQA, tiny ViT + GPT-2 captioner on captions): plain LoRA,
    /// routed LoRA with each parameter-free routing function, and the cross-attention-in-the-bottleneck baseline.
    /// </summary>
    public static readonly string[] RoutingMethods =
        new[] { RoutingLora }.Concat(Peft.Routing.RoutingFunctions.Names.Where(n => n is not ("none" or "cross_attention")).Select(n => RoutingPrefix + n))
            .Append(RoutingPrefix + "cross_attention").ToArray();

    /// <summary>The first paper's rows (tiny InstructBLIP, both tasks), the Bottleneck Adapter paper's (tiny LaVIN, ScienceQA), then the routing paper's.</summary>
    public static readonly string[] DefaultMethods = new[]
    {
        "qformer-full", "qformer-lora-self", "qformer-lora-cross", "qformer-lora-ffn", "qformer-lora-all", "qformer-llm-lora", "adalora", TextOnly,
        "bottleneck-adapter", "lavin-router", "lavin-llm-lora", LavinTextOnly,
    }.Concat(RoutingMethods).ToArray();

    /// <summary>The quick run's methods: the baseline, the best and the cheapest LoRA, AdaLoRA, the text-only floor, the Bottleneck Adapter, plain and add-routed LoRA.</summary>
    public static readonly string[] QuickMethods = { "qformer-full", "qformer-lora-self", "qformer-lora-all", "adalora", TextOnly, "bottleneck-adapter", RoutingLora, RoutingPrefix + "add" };

    public const string RoutingLora = "routing-lora", RoutingPrefix = "routed-";
    public static bool IsRouting(string method) => method == RoutingLora || method.StartsWith(RoutingPrefix, StringComparison.Ordinal);

    /// <summary>The demo tasks a method runs on.</summary>
    public static IEnumerable<string> TasksOf(string method) =>
        IsRouting(method) ? new[] { "vqav2", "captions" } : IsLavin(method) ? new[] { "scienceqa" } : new[] { "scienceqa", "iconqa" };

    /// <summary>The text-only baseline: qformer-lora-all trained and tested with blank images.</summary>
    public const string TextOnly = "text-only";
    /// <summary>The Bottleneck Adapter trained and tested without images ("Image: N/A", modality token 0).</summary>
    public const string LavinTextOnly = "lavin-text-only";

    public static bool IsLavin(string method) => method is "bottleneck-adapter" or "lavin-router" or "lavin-llm-lora" or LavinTextOnly;
}

/// <summary>One row of the demo's table.</summary>
public sealed record DemoRow(string Task, string Method, long Trainable, double PercentOfBaseline, double Validation, double Test, double Seconds, double SamplesPerSecond)
{
    public string Base => DemoOptions.IsRouting(Method) ? Demo.RoutingBase(Task) : DemoOptions.IsLavin(Method) ? "tiny-lavin" : "tiny-instructblip";
}

/// <summary>
/// The papers' experiments in miniature: generate the synthetic ScienceQA-like and IconQA-like data, fine-tune
/// the tiny pretrained InstructBLIP with the full-Q-Former baseline, Q-Former LoRA (self, cross, FFN, all),
/// Q-Former + LLM LoRA and AdaLoRA, and the tiny pretrained LaVIN-style model with the Bottleneck Adapter,
/// LaVIN's RepAdapter with router and LLM LoRA (ScienceQA, LaVIN's training recipe); evaluate on the
/// test split, and write a report, the AdaLoRA rank heatmap and learning curves.
/// </summary>
public static class Demo
{
    /// <summary>Runs the demo; <paramref name="progress"/> gets readable lines, <paramref name="advanced"/> (done, total) after each run.</summary>
    public static IReadOnlyList<DemoRow> Run(DemoOptions options, Action<string> progress, Action<int, int>? advanced = null)
    {
        var methods = options.Methods ?? (options.Quick ? DemoOptions.QuickMethods : DemoOptions.DefaultMethods);
        string? blipBase = methods.Any(m => !DemoOptions.IsLavin(m)) ? options.BaseModel ?? FindBaseModel("tiny-instructblip", "configs/demo/pretrain.yaml") : null;
        string? lavinBase = methods.Any(DemoOptions.IsLavin) ? options.LavinBaseModel ?? FindBaseModel("tiny-lavin", "configs/demo/pretrain-lavin.yaml") : null;
        var routingBases = methods.Any(DemoOptions.IsRouting)
            ? new[] { "vqav2", "captions" }.ToDictionary(t => t, t => FindBaseModel(RoutingBase(t), $"configs/demo/pretrain-{RoutingBase(t)["tiny-".Length..]}.yaml"))
            : new Dictionary<string, string>();
        Directory.CreateDirectory(options.Output);
        var tasks = new[] { "scienceqa", "iconqa", "vqav2", "captions" }.Where(t => methods.Any(m => DemoOptions.TasksOf(m).Contains(t))).ToArray();
        // Quick: the same 600 training examples for 3 epochs (fewer examples or epochs leave every method near chance).
        var (train, val, test, epochs) = options.Quick ? (600, 60, 100, 3) : (600, 150, 150, 10);
        foreach (var task in tasks)
        {
            string data = Path.Combine(options.Output, "data", task);
            string marker = task switch
            {
                "scienceqa" => "problems.json", "iconqa" => Path.Combine("test", "choose_txt"), "vqav2" => "karpathy_test.json", _ => "dataset_synth.json",
            };
            if (!File.Exists(Path.Combine(data, marker)) && !Directory.Exists(Path.Combine(data, marker)))
            {
                progress($"generating synthetic {task} data");
                // Captions: a new seed (the captioner's base was pretrained on seed 1's scenes) and 100 test images (beam search is the slow part).
                var summary = SyntheticSuite.Generate(task == "captions"
                    ? new SyntheticOptions { Task = task, Train = train, Val = options.Quick ? 40 : 100, Test = options.Quick ? 30 : 100, Seed = 3 }
                    : new SyntheticOptions { Task = task, Train = train, Val = val, Test = test, Seed = 1 }, data);
                if (!double.IsNaN(summary.BlindAccuracy))
                    progress($"  blind check: text-only baseline {summary.BlindAccuracy:F1}% vs {(task == "vqav2" ? "the most common answer" : "chance")} {summary.ChanceAccuracy:F1}%");
            }
        }
        // The LaVIN rows are ScienceQA's (the Bottleneck Adapter paper's benchmark); the routing rows VQA's and captions'.
        var runs = tasks.SelectMany(task => methods.Where(m => DemoOptions.TasksOf(m).Contains(task)).Select(m => (Task: task, Method: m))).ToList();
        var rows = new List<DemoRow>();
        // The runs' memory-estimate lines would break into the progress display; the estimates stay in each report.md.
        var info = Log.Info;
        Log.Info = _ => { };
        try
        {
            int index = 0;
            foreach (var (task, method) in runs)
            {
                progress($"[{++index}/{runs.Count}] {task}: {method}");
                var config = DemoOptions.IsRouting(method) ? RoutingExperiment(task, method, routingBases[task], options.Quick)
                    : DemoOptions.IsLavin(method) ? LavinExperiment(task, method, lavinBase!, Math.Min(epochs, LavinEpochs))
                    : BlipExperiment(task, method, blipBase!, epochs);
                config.Data = Path.Combine(options.Output, "data", task);
                var result = ExperimentRunner.Run(config, Path.Combine(options.Output, "runs", config.Name), overwrite: true);   // a rerun of the demo replaces its runs
                // Tensors left to finalizers (the runner disposes its model; wrappers that outlived a step are garbage now) go
                // before the next run: a region-quiet process only runs ephemeral collections, and 36 runs would pile them up.
                GC.Collect();
                GC.WaitForPendingFinalizers();
                rows.Add(new DemoRow(task, method, result.TrainableParameters, result.TrainablePercentOfBaseline, result.ValidationMetric,
                    result.TestAccuracy ?? double.NaN, result.Seconds, result.SamplesPerSecond));
                progress($"    trainable {result.TrainableParameters:N0} ({result.TrainablePercentOfBaseline:F1}% of baseline), val {result.ValidationMetric:F1}, test {result.TestAccuracy:F1}, {result.Seconds:F0} s");
                advanced?.Invoke(index, runs.Count);
                LearningCurves.SavePng(Path.Combine(result.RunDirectory, "metrics.jsonl"), Path.Combine(result.RunDirectory, "learning_curves.png"), config.Name);
                if (method == "adalora" && result.FinalRanks is { } ranks)
                {
                    var heatmap = RankHeatmap.FromRanks(ranks);
                    File.WriteAllText(Path.Combine(options.Output, $"rank_heatmap_{task}.csv"), heatmap.ToCsv());
                    heatmap.SavePng(Path.Combine(options.Output, $"rank_heatmap_{task}.png"), $"AdaLoRA final ranks ({task})");
                }
            }
        }
        finally
        {
            Log.Info = info;
        }
        File.WriteAllText(Path.Combine(options.Output, "report.md"), Report(rows, blipBase, lavinBase, options));
        return rows;
    }

    static ExperimentConfig BlipExperiment(string task, string method, string baseModel, int epochs)
    {
        bool textOnly = method == DemoOptions.TextOnly;
        return new ExperimentConfig
        {
            Name = $"{task}-{method}", Task = task, ImageOnly = false, TextOnly = textOnly,
            Model = new ExperimentConfig.ModelSection { Path = baseModel },
            Peft = PeftSection(textOnly ? "qformer-lora-all" : method),
            Training = new ExperimentConfig.TrainingSection
            {
                Lr = method is "qformer-full" or "qformer-llm-lora" ? 5e-4 : 2e-3, Epochs = epochs, BatchSize = 16,
                Patience = 3, Seed = 42, Schedule = Training.LearningRateSchedule.LinearDecayPerEpoch,
                Augment = false, // crops drop counted shapes and flips swap left and right: the answers would change
            },
        };
    }

    /// <summary>The LaVIN rows converge within 7 epochs of the half-cycle cosine (keeps the whole demo under 10 minutes).</summary>
    const int LavinEpochs = 7;

    /// <summary>
    /// LaVIN's recipe in miniature: AdamW (0.9, 0.95) with weight decay 0.02 off biases and 1-D tensors, per-iteration
    /// warmup then half-cycle cosine, the last epoch tested. The prompt is the first paper's ("(a) choice" targets,
    /// ranked): the tiny models do not learn QCM-ALE's letter indirection in this budget (full fine-tuning of the
    /// tiny LaVIN stays at chance with it), so both bases are compared on the same task and scoring.
    /// </summary>
    static ExperimentConfig LavinExperiment(string task, string method, string baseModel, int epochs)
    {
        bool textOnly = method == DemoOptions.LavinTextOnly;
        string preset = method switch { "lavin-llm-lora" => "llm-lora", "lavin-router" => "lavin-router", _ => "bottleneck-adapter" };
        return new ExperimentConfig
        {
            Name = $"{task}-{method}", Task = task, ImageOnly = false, TextOnly = textOnly,
            Model = new ExperimentConfig.ModelSection { Path = baseModel },
            Peft = preset == "llm-lora" ? new() { ["preset"] = preset, ["r"] = 4 } : new() { ["preset"] = preset },
            Training = new ExperimentConfig.TrainingSection
            {
                Lr = 5e-3, Epochs = epochs, BatchSize = 16, Patience = null, Seed = 42, Schedule = Training.LearningRateSchedule.HalfCycleCosine,
                WarmupEpochs = Math.Min(1, epochs - 1), WeightDecay = 0.02, WeightDecayRule = Training.OptimizerFactory.TimmRule, AdamBeta2 = 0.95,
                TestCheckpoint = "last", Augment = false,
            },
        };
    }

    /// <summary>The routing rows' base for a task: the tiny ViT + RoBERTa classifier (VQA) or the tiny ViT + GPT-2 captioner.</summary>
    public static string RoutingBase(string task) => task == "vqav2" ? "tiny-vit-roberta-vqa" : "tiny-vit-gpt2-captioning";

    /// <summary>
    /// The routing paper's recipe in miniature: rank 8 with α = r (the scripts: 128/128), the classifier or the LayerNorms
    /// trained as the scripts do, AdamW without weight decay, linear decay; VQA tested by VQA accuracy, captions by
    /// CIDEr-D of beam-5 generation. The lr is the tiny models' (the scripts' 3e-4 / 3e-5 are for 20 epochs at 124M).
    /// </summary>
    static ExperimentConfig RoutingExperiment(string task, string method, string baseModel, bool quick)
    {
        bool vqa = task == "vqav2";
        string family = vqa ? "roberta" : "gpt2";
        string routing = method == DemoOptions.RoutingLora ? "none" : method[DemoOptions.RoutingPrefix.Length..];
        var peft = routing switch
        {
            "none" => new Dictionary<string, object?> { ["preset"] = $"{family}-lora", ["r"] = 8 },
            "cross_attention" => new() { ["preset"] = $"{family}-cross-attention", ["r"] = 8 },
            _ => new() { ["preset"] = $"{family}-routed-lora", ["r"] = 8, ["routing"] = routing },
        };
        return new ExperimentConfig
        {
            Name = $"{task}-{method}", Task = task, Model = new ExperimentConfig.ModelSection { Path = baseModel }, Peft = peft,
            Training = new ExperimentConfig.TrainingSection
            {
                Lr = 3e-3, Epochs = quick ? 3 : vqa ? 10 : 6, BatchSize = 32, Patience = 3, Seed = 42, WeightDecay = 0,
                Schedule = Training.LearningRateSchedule.LinearDecayPerEpoch, Augment = false,
            },
            Evaluation = new ExperimentConfig.EvaluationSection { NumBeams = 5, MaxNewTokens = 30 },
        };
    }

    /// <summary>Rank 4 LoRA presets; AdaLoRA on qformer-lora-all's targets from rank 6 down to an average of 4.</summary>
    static Dictionary<string, object?> PeftSection(string method) => method == "adalora"
        ? new() { ["preset"] = "qformer-lora-all", ["peft_type"] = "ADALORA", ["init_r"] = 6, ["target_r"] = 4, ["lora_alpha"] = 8 }
        : method == "qformer-full" ? new() { ["preset"] = method } : new() { ["preset"] = method, ["r"] = 4 };

    static string FindBaseModel(string name, string recipe)
    {
        foreach (var root in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(root); dir != null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "models", name);
                if (File.Exists(Path.Combine(candidate, "model.safetensors"))) return candidate;
            }
        throw new BadInputException($"the tiny base model was not found (models/{name}); give its directory, or pretrain it with {recipe}");
    }

    public static string Table(IReadOnlyList<DemoRow> rows)
    {
        var s = new StringBuilder();
        s.AppendLine("| task | base | method | trainable params | % of baseline | val | test | time (s) | samples/s |");
        s.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            s.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Task} | {r.Base} | {r.Method} | {r.Trainable:N0} | {r.PercentOfBaseline:F2} | {r.Validation:F1} | {r.Test:F1} | {r.Seconds:F0} | {r.SamplesPerSecond:F0} |"));
        return s.ToString();
    }

    static string Report(IReadOnlyList<DemoRow> rows, string? blipBase, string? lavinBase, DemoOptions options) =>
        "# VlPeft demo\n\n" +
        (blipBase is null ? "" : $"Q-Former PEFT rows: base `{blipBase}` (tiny InstructBLIP pretrained on synthetic captions), scored by candidate ranking by LM loss as the paper; " +
            $"`{DemoOptions.TextOnly}` is qformer-lora-all trained and tested with blank images (it should stay near chance).\n\n") +
        (lavinBase is null ? "" : $"Bottleneck Adapter rows: base `{lavinBase}` (tiny LaVIN-style model: CLIP-style ViT, neck, modality token, LLaMA), ScienceQA with LaVIN's " +
            $"training recipe (the last epoch tested) and the first paper's prompt and ranking (the tiny models do not learn QCM-ALE's letter indirection in this budget); `{DemoOptions.LavinTextOnly}` " +
            "is the Bottleneck Adapter trained and tested without images (\"Image: N/A\", modality token 0).\n\n") +
        (rows.Any(r => DemoOptions.IsRouting(r.Method)) ? "Routing rows: tiny ViT + RoBERTa-style classifier (VQA-style questions, VL-T5 Karpathy layout, soft scores) and tiny ViT + GPT-2-style captioner " +
            "(Karpathy captions, beam 5), towers pretrained apart (configs/demo/pretrain-vit-*.yaml); `routing-lora` is plain LoRA, `routed-<function>` routed LoRA, " +
            "`routed-cross_attention` the cross-attention-in-the-bottleneck baseline (docs/routing.md).\n\n" : "") +
        $"Data: synthetic ScienceQA-like, IconQA-like, VQAv2-like and caption suites in the official formats{(options.Quick ? " (quick mode)" : "")}.\n\n" +
        Table(rows) + "\nval / test: accuracy (scienceqa, iconqa), VQA accuracy (vqav2), −caption loss / CIDEr-D ×100 (captions).\n" +
        "\nAdaLoRA rank heatmaps: `rank_heatmap_<task>.png` / `.csv`. Learning curves and TensorBoard logs: `runs/<task>-<method>/`.\n";
}
