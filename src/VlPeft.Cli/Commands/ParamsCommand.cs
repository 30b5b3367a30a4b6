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
        var preset = new Option<string?>("--preset") { Description = $"Model preset (this or --config is required): {string.Join(", ", ModelPresets.Names)}" };
        var config = new Option<string?>("--config") { Description = "A HF config.json, or a directory holding one (this or --preset is required)" };
        var peft = new Option<string?>("--peft") { Description = "PEFT preset of the model's family (e.g. qformer-lora-all), full, or an adapter_config.json / adapter directory (default: the family's first preset, qformer-full for InstructBLIP)" };
        var rank = new Option<int>("--rank") { Description = "LoRA rank for the PEFT presets (paper: 1, 2, 4, 8)", DefaultValueFactory = _ => 8 };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var command = new Command("params", "Count total and trainable parameters of a model under a PEFT configuration, without allocating weights")
        {
            preset, config, peft, rank, json,
        };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            string model = (parse.GetValue(preset), parse.GetValue(config)) switch
            {
                (string p, null) => p,
                (null, string c) => c,
                _ => throw new BadInputException("give exactly one of --preset or --config"),
            };
            var summary = ModelParameterSummary.Compute(model, parse.GetValue(peft), parse.GetValue(rank), out string plan);
            if (parse.GetValue(json)) console.Out.WriteLine(JsonSerializer.Serialize(summary, CliJson.Options));
            else Print(console.Out, summary, plan);
            return CliApp.Success;
        }));
        return command;
    }

    static void Print(TextWriter o, ModelParameterSummary s, string plan)
    {
        string N(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
        var rows = new List<string[]> { new[] { "component", "total", "trainable" } };
        rows.AddRange(s.Components.Select(c => new[] { c.Name, N(c.Total), N(c.Trainable) }));
        rows.Add(new[] { "all", N(s.Total), N(s.Trainable) });
        TextTable.Write(o, rows);
        o.WriteLine();
        var groups = new List<string[]> { new[] { "group", "total", "trainable" } };
        groups.AddRange(s.Groups.Select(g => new[] { g.Name, N(g.Total), N(g.Trainable) }));
        TextTable.Write(o, groups);
        o.WriteLine();
        string Mb(long b) => (b / 1e6).ToString("F1", CultureInfo.InvariantCulture) + " MB";
        var bytes = new List<string[]> { new[] { "weights", "fp32", "bf16 towers", "int8 towers", "nf4 towers", "int8 + tables", "nf4 + tables" } };
        string[] Row(string name, IEnumerable<WeightBytes> b) => new[]
        {
            name, Mb(b.Sum(x => x.Fp32)), Mb(b.Sum(x => x.Bf16)), Mb(b.Sum(x => x.Int8)), Mb(b.Sum(x => x.Nf4)), Mb(b.Sum(x => x.Int8Tables)), Mb(b.Sum(x => x.Nf4Tables)),
        };
        bytes.AddRange(s.Bytes.Select(b => Row(b.Name, new[] { b })));
        bytes.Add(Row("all", s.Bytes));
        TextTable.Write(o, bytes);
        o.WriteLine("(towers: the frozen vision and language parts; int8/nf4: their linear weights with scales, other tower tensors bf16; + tables: their token tables quantized too, model.quantize_embeddings; the rest fp32)");
        o.WriteLine();
        o.WriteLine($"plan {plan}: trainable {s.TrainablePercent.ToString("F4", CultureInfo.InvariantCulture)}% of the model, "
            + $"{s.TrainablePercentOfBaseline.ToString("F2", CultureInfo.InvariantCulture)}% of the bridge baseline (everything outside the frozen towers: {N(s.BaselineTrainable)} parameters)");
    }
}
