using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using VlPeft.Analysis;
using VlPeft.Experiments;
using VlPeft.Models.Configs;

namespace VlPeft.Cli.Commands;

static class ParamsCommand
{
    public static Command Create(CliConsole console)
    {
        var preset = new Option<string?>("--preset") { Description = $"Model preset: {string.Join(", ", ModelPresets.Names)}" };
        var config = new Option<string?>("--config") { Description = "A HF config.json (or a directory holding one)" };
        var peft = new Option<string>("--peft") { Description = $"PEFT preset ({string.Join(", ", PeftPresets.Names)}) or an adapter_config.json", DefaultValueFactory = _ => "qformer-full" };
        var rank = new Option<int>("--rank") { Description = "LoRA rank for the PEFT presets (paper: 1, 2, 4, 8)", DefaultValueFactory = _ => 8 };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var command = new Command("params", "Count total and trainable parameters of a model under a PEFT configuration, without allocating weights")
        {
            preset, config, peft, rank, json,
        };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var modelConfig = (parse.GetValue(preset), parse.GetValue(config)) switch
            {
                (string p, null) => ModelPresets.Get(p),
                (null, string c) => MultimodalConfig.Load(c),
                _ => throw new BadInputException("give exactly one of --preset or --config"),
            };
            var plan = ResolvePlan(parse.GetValue(peft)!, modelConfig, parse.GetValue(rank));
            var summary = ModelParameterSummary.Compute(modelConfig, plan);
            if (parse.GetValue(json)) console.Out.WriteLine(JsonSerializer.Serialize(summary, CliJson.Options));
            else Print(console.Out, summary, plan.Name);
            return CliApp.Success;
        }));
        return command;
    }

    static TrainingPlan ResolvePlan(string peft, MultimodalConfig config, int rank)
    {
        if (!File.Exists(peft) && !Directory.Exists(peft)) return PeftPresets.Get(peft, config, rank);
        var peftConfig = Directory.Exists(peft) ? Peft.PeftFiles.ReadConfig(peft) : Peft.PeftConfig.Parse(File.ReadAllText(peft), peft);
        return new TrainingPlan(Path.GetFileName(peft), peftConfig, Array.Empty<string>());
    }

    static void Print(TextWriter o, ModelParameterSummary s, string plan)
    {
        string N(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
        var rows = new List<string[]> { new[] { "component", "total", "trainable" } };
        rows.AddRange(s.Components.Select(c => new[] { c.Name, N(c.Total), N(c.Trainable) }));
        rows.Add(new[] { "all", N(s.Total), N(s.Trainable) });
        TextTable.Write(o, rows);
        o.WriteLine();
        o.WriteLine($"plan {plan}: trainable {s.TrainablePercent.ToString("F4", CultureInfo.InvariantCulture)}% of the model, "
            + $"{s.TrainablePercentOfBaseline.ToString("F2", CultureInfo.InvariantCulture)}% of the InstructBLIP baseline (qformer-full: {N(s.BaselineTrainable)} trainable)");
    }
}
