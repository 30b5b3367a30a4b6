using System.CommandLine;
using Spectre.Console;
using VlPeft.Experiments;

namespace VlPeft.Cli.Commands;

static class DemoCommand
{
    public static Command Create(CliConsole console)
    {
        var output = new Option<string>("--out") { Description = "Output directory", DefaultValueFactory = _ => "demo-output" };
        var quick = new Option<bool>("--quick") { Description = "Fewer examples and epochs" };
        var baseModel = new Option<string?>("--base") { Description = "Pretrained tiny InstructBLIP base (default: models/tiny-instructblip)" };
        var lavinBase = new Option<string?>("--lavin-base") { Description = "Pretrained tiny LaVIN-style base (default: models/tiny-lavin)" };
        var methods = new Option<string?>("--methods") { Description = $"Comma-separated subset of: {string.Join(", ", DemoOptions.DefaultMethods)}" };
        var json = new Option<bool>("--json") { Description = "Print the result rows as JSON (progress goes to stderr)" };
        var command = new Command("demo", "Fine-tune the tiny InstructBLIP and the tiny LaVIN-style model with each PEFT method on the synthetic suites and report")
        {
            output, quick, baseModel, lavinBase, methods, json,
        };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var options = new DemoOptions { Output = parse.GetValue(output)!, Quick = parse.GetValue(quick), BaseModel = parse.GetValue(baseModel), LavinBaseModel = parse.GetValue(lavinBase) };
            if (parse.GetValue(methods) is string subset)
            {
                var chosen = subset.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                string? unknown = chosen.FirstOrDefault(m => !DemoOptions.DefaultMethods.Contains(m));
                if (chosen.Length == 0 || unknown != null)
                    throw new BadInputException($"--methods: unknown method '{unknown}' (known: {string.Join(", ", DemoOptions.DefaultMethods)})");
                options = options with { Methods = chosen };
            }
            // A progress bar on a terminal; plain lines in pipes, logs and tests.
            bool asJson = parse.GetValue(json);
            bool terminal = !asJson && ReferenceEquals(console.Out, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
            IReadOnlyList<DemoRow> rows = null!;
            if (terminal)
                AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        var bar = ctx.AddTask("demo", maxValue: 1);
                        rows = Demo.Run(options, line => { if (!line.StartsWith("    ")) bar.Description = Markup.Escape(line); },
                            (done, total) => { bar.MaxValue = total; bar.Value = done; });
                    });
            else
                rows = Demo.Run(options, line => (asJson ? console.Error : console.Out).WriteLine(line));
            if (asJson)
            {
                console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(new { rows, report = Path.Combine(parse.GetValue(output)!, "report.md") }, CliJson.Options));
                return CliApp.Success;
            }
            console.Out.WriteLine();
            console.Out.Write(Demo.Table(rows));
            console.Out.WriteLine($"\nreport: {Path.Combine(parse.GetValue(output)!, "report.md")}");
            return CliApp.Success;
        }));
        return command;
    }
}
