using System.Globalization;
using System.Text;
using VlPeft.Analysis;
using VlPeft.Data.Synthetic;

namespace VlPeft.Experiments;

/// <summary>Settings of <c>vlpeft demo</c>.</summary>
public sealed record DemoOptions
{
    public required string Output { get; init; }
    /// <summary>The pretrained tiny base (default: models/tiny-instructblip beside the program or the working directory).</summary>
    public string? BaseModel { get; init; }
    /// <summary>About two minutes: the full training set, 3 epochs, smaller evaluation splits and five methods.</summary>
    public bool Quick { get; init; }
    /// <summary>Null: every method (<see cref="DefaultMethods"/>), or <see cref="QuickMethods"/> in quick mode.</summary>
    public IReadOnlyList<string>? Methods { get; init; }

    public static readonly string[] DefaultMethods =
    {
        "qformer-full", "qformer-lora-self", "qformer-lora-cross", "qformer-lora-ffn", "qformer-lora-all", "qformer-llm-lora", "adalora", TextOnly,
    };

    /// <summary>The quick run's methods: the baseline, the best and the cheapest LoRA, AdaLoRA, and the text-only floor.</summary>
    public static readonly string[] QuickMethods = { "qformer-full", "qformer-lora-self", "qformer-lora-all", "adalora", TextOnly };

    /// <summary>The text-only baseline: qformer-lora-all trained and tested with blank images.</summary>
    public const string TextOnly = "text-only";
}

/// <summary>One row of the demo's table.</summary>
public sealed record DemoRow(string Task, string Method, long Trainable, double PercentOfBaseline, double Validation, double Test, double Seconds, double SamplesPerSecond);

/// <summary>
/// The first paper's experiment in miniature: generate the synthetic ScienceQA-like and IconQA-like
/// data, fine-tune the tiny pretrained InstructBLIP with the full-Q-Former baseline, Q-Former LoRA
/// (self, cross, FFN, all), Q-Former + LLM LoRA and AdaLoRA, evaluate on the test split, and write a
/// report, the AdaLoRA rank heatmap and learning curves.
/// </summary>
public static class Demo
{
    /// <summary>Runs the demo; <paramref name="progress"/> gets readable lines, <paramref name="advanced"/> (done, total) after each run.</summary>
    public static IReadOnlyList<DemoRow> Run(DemoOptions options, Action<string> progress, Action<int, int>? advanced = null)
    {
        string baseModel = options.BaseModel ?? FindBaseModel();
        Directory.CreateDirectory(options.Output);
        var tasks = new[] { "scienceqa", "iconqa" };
        // Quick: the same 600 training examples for 3 epochs (fewer examples or epochs leave every method near chance).
        var (train, val, test, epochs) = options.Quick ? (600, 60, 100, 3) : (600, 150, 150, 10);
        var methods = options.Methods ?? (options.Quick ? DemoOptions.QuickMethods : DemoOptions.DefaultMethods);
        foreach (var task in tasks)
        {
            string data = Path.Combine(options.Output, "data", task);
            if (!File.Exists(Path.Combine(data, task == "scienceqa" ? "problems.json" : Path.Combine("test", "choose_txt"))) && !Directory.Exists(Path.Combine(data, "test", "choose_txt")))
            {
                progress($"generating synthetic {task} data");
                var summary = SyntheticSuite.Generate(new SyntheticOptions { Task = task, Train = train, Val = val, Test = test, Seed = 1 }, data);
                progress($"  blind check: text-only baseline {summary.BlindAccuracy:F1}% vs chance {summary.ChanceAccuracy:F1}%");
            }
        }
        var rows = new List<DemoRow>();
        int index = 0, total = tasks.Length * methods.Count;
        foreach (var task in tasks)
            foreach (var method in methods)
            {
                progress($"[{++index}/{total}] {task}: {method}");
                bool textOnly = method == DemoOptions.TextOnly;
                var config = new ExperimentConfig
                {
                    Name = $"{task}-{method}", Task = task, ImageOnly = false, Data = Path.Combine(options.Output, "data", task),
                    TextOnly = textOnly,
                    Model = new ExperimentConfig.ModelSection { Path = baseModel },
                    Peft = PeftSection(textOnly ? "qformer-lora-all" : method),
                    Training = new ExperimentConfig.TrainingSection
                    {
                        Lr = method is "qformer-full" or "qformer-llm-lora" ? 5e-4 : 2e-3, Epochs = epochs, BatchSize = 16,
                        Patience = 3, Seed = 42, Schedule = Training.LearningRateSchedule.LinearDecayPerEpoch,
                        Augment = false, // crops drop counted shapes and flips swap left and right: the answers would change
                    },
                };
                var result = ExperimentRunner.Run(config, Path.Combine(options.Output, "runs", config.Name), overwrite: true);   // a rerun of the demo replaces its runs
                rows.Add(new DemoRow(task, method, result.TrainableParameters, result.TrainablePercentOfBaseline, result.ValidationMetric,
                    result.TestAccuracy ?? double.NaN, result.Seconds, result.SamplesPerSecond));
                progress($"    trainable {result.TrainableParameters:N0} ({result.TrainablePercentOfBaseline:F1}% of baseline), val {result.ValidationMetric:F1}, test {result.TestAccuracy:F1}, {result.Seconds:F0} s");
                advanced?.Invoke(index, total);
                LearningCurves.SavePng(Path.Combine(result.RunDirectory, "metrics.jsonl"), Path.Combine(result.RunDirectory, "learning_curves.png"), config.Name);
                if (method == "adalora" && result.FinalRanks is { } ranks)
                {
                    var heatmap = RankHeatmap.FromRanks(ranks);
                    File.WriteAllText(Path.Combine(options.Output, $"rank_heatmap_{task}.csv"), heatmap.ToCsv());
                    heatmap.SavePng(Path.Combine(options.Output, $"rank_heatmap_{task}.png"), $"AdaLoRA final ranks ({task})");
                }
            }
        File.WriteAllText(Path.Combine(options.Output, "report.md"), Report(rows, baseModel, options));
        return rows;
    }

    /// <summary>Rank 4 LoRA presets; AdaLoRA on qformer-lora-all's targets from rank 6 down to an average of 4.</summary>
    static Dictionary<string, object?> PeftSection(string method) => method == "adalora"
        ? new() { ["preset"] = "qformer-lora-all", ["peft_type"] = "ADALORA", ["init_r"] = 6, ["target_r"] = 4, ["lora_alpha"] = 8 }
        : method == "qformer-full" ? new() { ["preset"] = method } : new() { ["preset"] = method, ["r"] = 4 };

    static string FindBaseModel()
    {
        foreach (var root in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(root); dir != null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "models", "tiny-instructblip");
                if (File.Exists(Path.Combine(candidate, "model.safetensors"))) return candidate;
            }
        throw new BadInputException("the tiny base model was not found (models/tiny-instructblip); give --base, or pretrain it with configs/demo/pretrain.yaml");
    }

    public static string Table(IReadOnlyList<DemoRow> rows)
    {
        var s = new StringBuilder();
        s.AppendLine("| task | method | trainable params | % of baseline | val acc | test acc | time (s) | samples/s |");
        s.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            s.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Task} | {r.Method} | {r.Trainable:N0} | {r.PercentOfBaseline:F2} | {r.Validation:F1} | {r.Test:F1} | {r.Seconds:F0} | {r.SamplesPerSecond:F0} |"));
        return s.ToString();
    }

    static string Report(IReadOnlyList<DemoRow> rows, string baseModel, DemoOptions options) =>
        $"# VlPeft demo\n\nBase: `{baseModel}` (tiny InstructBLIP pretrained on synthetic captions). Data: synthetic ScienceQA-like and IconQA-like suites " +
        $"in the official formats{(options.Quick ? " (quick mode)" : "")}. Scoring: candidate ranking by LM loss, as the Q-Former PEFT paper. " +
        $"`{DemoOptions.TextOnly}` is qformer-lora-all trained and tested with blank images (it should stay near chance).\n\n" +
        Table(rows) + "\nAdaLoRA rank heatmaps: `rank_heatmap_<task>.png` / `.csv`. Learning curves and TensorBoard logs: `runs/<task>-<method>/`.\n";
}
