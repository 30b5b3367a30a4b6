using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;

namespace VlPeft.Training;

/// <summary>
/// A run's folder: <c>config.json</c> (resolved options), <c>metrics.jsonl</c>, TensorBoard events under
/// <c>tensorboard/</c>, <c>checkpoints/last</c> (resumable) and <c>checkpoints/best</c>, the final
/// adapter under <c>adapter/</c>, and <c>report.md</c>.
/// </summary>
public sealed class RunDirectory
{
    TorchSharp.Modules.SummaryWriter? tensorboard;

    public RunDirectory(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string LastCheckpoint => System.IO.Path.Combine(Path, "checkpoints", "last");
    public string BestCheckpoint => System.IO.Path.Combine(Path, "checkpoints", "best");
    public string AdapterDirectory => System.IO.Path.Combine(Path, "adapter");
    public string MetricsFile => System.IO.Path.Combine(Path, "metrics.jsonl");
    public string ReportFile => System.IO.Path.Combine(Path, "report.md");
    public string TensorBoardDirectory => System.IO.Path.Combine(Path, "tensorboard");

    public void SaveConfig(object config)
    {
        string file = System.IO.Path.Combine(Path, "config.json");
        AtomicFile.WriteAllText(file, JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Appends one JSON line to metrics.jsonl and the numeric fields to TensorBoard.</summary>
    public void Log(int step, IReadOnlyDictionary<string, double> values, string prefix)
    {
        var line = new JsonObject { ["step"] = step };
        foreach (var (key, value) in values) line[key] = double.IsFinite(value) ? value : null;
        File.AppendAllText(MetricsFile, line.ToJsonString() + "\n");
        tensorboard ??= torch.utils.tensorboard.SummaryWriter(TensorBoardDirectory);
        foreach (var (key, value) in values)
            if (double.IsFinite(value) && key != "epoch") tensorboard.add_scalar($"{prefix}/{key}", (float)value, step);
    }

    /// <summary>Drops metrics lines past a step (a resumed run rewrites what the interrupted one logged after its checkpoint).</summary>
    public void TruncateMetricsAfter(int step)
    {
        if (!File.Exists(MetricsFile)) return;
        var kept = File.ReadAllLines(MetricsFile).Where(l => JsonNode.Parse(l)?["step"]?.GetValue<int>() <= step).ToList();
        File.WriteAllLines(MetricsFile, kept);
    }
}
