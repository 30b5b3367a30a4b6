using VlPeft.Distributed;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using VlPeft.Evaluation.Metrics;
using VlPeft.Experiments;

namespace VlPeft.Cli.Commands;

static class EvalCommand
{
    public static Command Create(CliConsole console)
    {
        var config = SharedOptions.ExperimentFile("Experiment file (task, image filter)");
        var model = SharedOptions.ModelOverride();
        var quantize = SharedOptions.Quantize();
        var quantizeEmbeddings = SharedOptions.QuantizeEmbeddings();
        var data = SharedOptions.Data();
        var adapter = SharedOptions.Adapter("Adapter directory (HF PEFT format); none evaluates the base model");
        var split = new Option<string>("--split") { DefaultValueFactory = _ => "test" };
        var predictions = new Option<string?>("--predictions-out") { Description = "Write the predictions here ({\"results\": {id: index}}; vqav2 / captions: the official results files)" };
        var generate = new Option<bool>("--generate") { Description = "Generate answers and parse them instead of ranking the candidates" };
        var beams = new Option<int>("--beams") { DefaultValueFactory = _ => 1 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy/beam; above 0 samples with --top-p", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { DefaultValueFactory = _ => 1.0 };
        var command = new Command("eval", "Evaluate a model (+ adapter) on a split by candidate ranking (default) or generation")
        {
            config, model, quantize, quantizeEmbeddings, data, adapter, split, predictions, generate, beams, temperature, topP,
        };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var experiment = ExperimentConfig.Load(parse.GetValue(config)!);
            experiment.Data = parse.GetValue(data) ?? experiment.Data;
            experiment.Model.Path = parse.GetValue(model) ?? experiment.Model.Path;
            if (parse.GetValue(quantize) is string q) experiment.Model.Quantize = q;
            if (parse.GetValue(quantizeEmbeddings)) experiment.Model.QuantizeEmbeddings = true;
            experiment.Model.FromScratch = false;
            if (experiment.Task is "vqav2" or "captions")
            {
                // The routing paper's models: a classifier's VQA accuracy, or CIDEr-D of the captioner's beam search (evaluation: in the file).
                var (score, metric, count, results) = ExperimentRunner.EvaluateOpen(experiment, parse.GetValue(adapter), parse.GetValue(split)!);
                if (Cluster.Current.IsRoot && parse.GetValue(predictions) is string resultsFile) AtomicFile.WriteAllText(resultsFile, JsonSerializer.Serialize(results));
                console.Out.WriteLine($"{metric} {score.ToString("F2", CultureInfo.InvariantCulture)} on {count} {(experiment.Task == "vqav2" ? "questions" : "images")}");
                return CliApp.Success;
            }
            var generation = parse.GetValue(generate)
                ? new VlPeft.Evaluation.GenerationOptions { NumBeams = parse.GetValue(beams), Temperature = parse.GetValue(temperature), TopP = parse.GetValue(topP), MaxNewTokens = 16 }
                : null;
            var (accuracy, categories, predicted) = ExperimentRunner.Evaluate(experiment, parse.GetValue(adapter), parse.GetValue(split)!, generation);
            if (Cluster.Current.IsRoot && parse.GetValue(predictions) is string file) AtomicFile.WriteAllText(file, JsonSerializer.Serialize(new { results = predicted }));
            console.Out.WriteLine($"accuracy {accuracy.ToString("F2", CultureInfo.InvariantCulture)} on {predicted.Count} questions");
            if (categories != null)
                TextTable.Write(console.Out, new List<string[]>
                {
                    ScienceQaScorer.Columns.Select(c => c.Label).ToArray(),
                    ScienceQaScorer.Columns.Select(c => categories[c.Key].ToString()!).ToArray(),
                });
            return CliApp.Success;
        }));
        return command;
    }
}
