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
        var config = new Option<string>("--config") { Description = "Experiment file (task, image filter)", Required = true };
        var model = new Option<string?>("--model") { Description = "HF checkpoint directory" };
        var data = new Option<string?>("--data") { Description = "Data directory" };
        var adapter = new Option<string?>("--adapter") { Description = "Adapter directory (HF PEFT format); none evaluates the base model" };
        var split = new Option<string>("--split") { DefaultValueFactory = _ => "test" };
        var predictions = new Option<string?>("--predictions-out") { Description = "Write {\"results\": {id: index}} here" };
        var command = new Command("eval", "Evaluate a model (+ adapter) by candidate ranking on a split") { config, model, data, adapter, split, predictions };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var experiment = ExperimentConfig.Load(parse.GetValue(config)!);
            experiment.Data = parse.GetValue(data) ?? experiment.Data;
            experiment.Model.Path = parse.GetValue(model) ?? experiment.Model.Path;
            experiment.Model.FromScratch = false;
            var (accuracy, categories, predicted) = ExperimentRunner.Evaluate(experiment, parse.GetValue(adapter), parse.GetValue(split)!);
            if (parse.GetValue(predictions) is string file) File.WriteAllText(file, JsonSerializer.Serialize(new { results = predicted }));
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
