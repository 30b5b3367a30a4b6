using System.CommandLine;
using System.Globalization;
using VlPeft.Data.Synthetic;

namespace VlPeft.Cli.Commands;

static class DataCommand
{
    public static Command Create(CliConsole console)
    {
        var task = new Option<string>("--task") { Description = "scienceqa, iconqa, captions or vqav2 (VL-T5 Karpathy layout)", Required = true };
        task.AcceptOnlyFromAmong("scienceqa", "iconqa", "captions", "vqav2");
        var output = new Option<string>("--out") { Description = "Output directory", Required = true };
        var train = new Option<int>("--train") { DefaultValueFactory = _ => 600 };
        var val = new Option<int>("--val") { DefaultValueFactory = _ => 150 };
        var test = new Option<int>("--test") { DefaultValueFactory = _ => 150 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var synth = new Command("synth", "Generate the synthetic visual-reasoning suite in an official on-disk format") { task, output, train, val, test, seed };
        synth.SetAction(parse => CliApp.Guard(console, () =>
        {
            var summary = SyntheticSuite.Generate(new SyntheticOptions
            {
                Task = parse.GetValue(task)!, Train = parse.GetValue(train), Val = parse.GetValue(val), Test = parse.GetValue(test), Seed = parse.GetValue(seed),
            }, parse.GetValue(output)!);
            console.Out.WriteLine($"wrote {summary.Task}: train {summary.Train}, val {summary.Val}, test {summary.Test} → {summary.Directory}");
            if (!double.IsNaN(summary.BlindAccuracy))
                console.Out.WriteLine($"blind check (text-only baseline on image questions): {summary.BlindAccuracy.ToString("F1", CultureInfo.InvariantCulture)}% vs chance {summary.ChanceAccuracy.ToString("F1", CultureInfo.InvariantCulture)}%");
            return CliApp.Success;
        }));
        return new Command("data", "Dataset utilities") { synth };
    }
}
