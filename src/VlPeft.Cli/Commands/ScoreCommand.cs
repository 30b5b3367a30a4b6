using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using VlPeft.Evaluation;
using VlPeft.Evaluation.Metrics;

namespace VlPeft.Cli.Commands;

static class ScoreCommand
{
    public static Command Create(CliConsole console)
    {
        var benchmark = new Argument<string>("benchmark") { Description = string.Join(", ", BenchmarkScoring.Benchmarks) };
        benchmark.AcceptOnlyFromAmong(BenchmarkScoring.Benchmarks);
        var data = new Option<string?>("--data") { Description = "The benchmark as released (docs/data-and-scoring.md gives each benchmark's form); VQAv2 may give --questions and --annotations instead" };
        var predictions = new Option<string>("--predictions") { Description = "Predictions file", Required = true };
        var split = new Option<string?>("--split") { Description = "Split to score (default: test; VQAv2: val2014)" };
        var questions = new Option<string?>("--questions") { Description = "VQAv2 questions JSON (with --annotations, instead of --data)" };
        var annotations = new Option<string?>("--annotations") { Description = "VQAv2 annotations JSON" };
        var allowMissing = new Option<bool>("--allow-missing") { Description = "Count ids without a prediction as wrong instead of failing" };
        var rule = new Option<string>("--answer-rule") { Description = "ScienceQA text parsing: llava (unparsable = wrong), official, lavin (unparsable = random under --seed)", DefaultValueFactory = _ => "llava" };
        rule.AcceptOnlyFromAmong("llava", "official", "lavin");
        var seed = new Option<int>("--seed") { Description = "Seed of the official/lavin random fallback", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print {\"metrics\":…,\"counts\":…}" };
        var command = new Command("score", "Score predictions with the official metrics") { benchmark, data, predictions, split, questions, annotations, allowMissing, rule, seed, json };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var result = BenchmarkScoring.Score(new ScoreRequest
            {
                Benchmark = parse.GetValue(benchmark)!, Data = parse.GetValue(data), Predictions = parse.GetValue(predictions)!,
                Split = parse.GetValue(split), Questions = parse.GetValue(questions), Annotations = parse.GetValue(annotations),
                AllowMissing = parse.GetValue(allowMissing), Seed = parse.GetValue(seed),
                AnswerRule = Enum.Parse<ScienceQaAnswerRule>(parse.GetValue(rule)!, ignoreCase: true),
            });
            if (parse.GetValue(json)) WriteJson(console.Out, result);
            else WriteTable(console.Out, result);
            foreach (var note in result.Notes) console.Error.WriteLine($"note: {note}");
            return CliApp.Success;
        }));
        return command;
    }

    static string Format(object value) => value switch
    {
        double d => d.ToString("0.####", CultureInfo.InvariantCulture),
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };

    static void WriteTable(TextWriter o, BenchmarkScore result)
    {
        var table = result.Table;
        TextTable.Write(o, new List<string[]>
        {
            table.Select(t => t.Label).ToArray(),
            table.Select(t => Format(result.Report.Metrics[t.Key])).ToArray(),
        });
    }

    static void WriteJson(TextWriter o, BenchmarkScore result)
    {
        var metrics = new JsonObject();
        foreach (var (key, value) in result.Report.Metrics)
            metrics[key] = JsonSerializer.SerializeToNode(value);
        var counts = new JsonObject();
        foreach (var (key, value) in result.Report.Counts) counts[key] = value;
        o.WriteLine(new JsonObject { ["metrics"] = metrics, ["counts"] = counts }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
