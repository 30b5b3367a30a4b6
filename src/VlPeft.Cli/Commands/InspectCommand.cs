using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using VlPeft.Tensors;

namespace VlPeft.Cli.Commands;

static class InspectCommand
{
    public static Command Create(CliConsole console)
    {
        var path = new Argument<string>("path") { Description = "A .safetensors file, a sharded index JSON, or a directory holding either" };
        var stats = new Option<bool>("--stats") { Description = "Add min, max, mean, std and NaN/Inf counts per tensor" };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var command = new Command("inspect", "List the tensors of a safetensors checkpoint") { path, stats, json };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var summary = CheckpointSummary.Of(parse.GetValue(path)!, parse.GetValue(stats));
            if (parse.GetValue(json)) WriteJson(console.Out, summary);
            else WriteText(console.Out, summary, parse.GetValue(stats));
            return CliApp.Success;
        }));
        return command;
    }

    static void WriteText(TextWriter o, CheckpointSummary s, bool withStats)
    {
        var rows = new List<string[]> { withStats
            ? new[] { "name", "dtype", "shape", "elements", "min", "max", "mean", "std", "nan", "inf" }
            : new[] { "name", "dtype", "shape", "elements" } };
        foreach (var t in s.Tensors)
        {
            var row = new List<string> { t.Name, t.DType, $"[{string.Join(", ", t.Shape)}]", t.Elements.ToString("N0", CultureInfo.InvariantCulture) };
            if (withStats)
                row.AddRange(t.Stats == null
                    ? new[] { "-", "-", "-", "-", "-", "-" }
                    : new[] { Number(t.Stats.Min), Number(t.Stats.Max), Number(t.Stats.Mean), Number(t.Stats.Std), t.Stats.NaN.ToString(), t.Stats.Inf.ToString() });
            rows.Add(row.ToArray());
        }
        TextTable.Write(o, rows);
        o.WriteLine();
        o.WriteLine($"tensors: {s.Tensors.Count}  parameters: {s.TotalParameters.ToString("N0", CultureInfo.InvariantCulture)}  bytes: {s.TotalBytes.ToString("N0", CultureInfo.InvariantCulture)}");
        if (s.Metadata.Count > 0)
        {
            o.WriteLine("metadata:");
            foreach (var (key, value) in s.Metadata)
                o.WriteLine($"  {key}: {(value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText())}");
        }
    }

    static string Number(double? value) => value?.ToString("G6", CultureInfo.InvariantCulture) ?? "-";

    static void WriteJson(TextWriter o, CheckpointSummary s)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("tensors");
            foreach (var t in s.Tensors)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteString("dtype", t.DType);
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                if (t.Stats != null)
                {
                    w.WriteStartObject("stats");
                    WriteNullable(w, "min", t.Stats.Min);
                    WriteNullable(w, "max", t.Stats.Max);
                    WriteNullable(w, "mean", t.Stats.Mean);
                    WriteNullable(w, "std", t.Stats.Std);
                    w.WriteNumber("nan", t.Stats.NaN);
                    w.WriteNumber("inf", t.Stats.Inf);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("total_parameters", s.TotalParameters);
            w.WriteNumber("total_bytes", s.TotalBytes);
            w.WriteStartObject("metadata");
            foreach (var (key, value) in s.Metadata)
            {
                w.WritePropertyName(key);
                value.WriteTo(w);
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        o.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
    }

    static void WriteNullable(Utf8JsonWriter w, string name, double? value)
    {
        if (value is double v) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }
}
