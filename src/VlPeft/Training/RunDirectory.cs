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

    public string LockFile => System.IO.Path.Combine(Path, "run.lock");
    string HolderFile => LockFile + ".holder";

    /// <summary>
    /// One writer per run directory: an exclusive lock on <c>run.lock</c> held while the returned handle lives.
    /// The OS releases it when the process ends, however it ends, so a killed run never leaves it stuck.
    /// <c>run.lock.holder</c> names the holder (the locked file itself cannot be read by the one refused).
    /// </summary>
    public IDisposable Lock()
    {
        FileStream stream;
        try
        {
            stream = new FileStream(LockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            string holder = File.Exists(HolderFile) ? File.ReadAllText(HolderFile).Trim() : "";
            throw new BadInputException($"the run directory is in use by {(holder.Length > 0 ? holder : "another process")}; wait for it to finish or use another --out", Path);
        }
        File.WriteAllText(HolderFile, $"process {Environment.ProcessId} on {Environment.MachineName}, started {DateTime.UtcNow:u}");
        return stream;
    }

    /// <summary>Whether an earlier run left training state here (a checkpoint).</summary>
    public bool HoldsRun => TrainingCheckpoint.Find(LastCheckpoint) is not null;

    /// <summary>Removes what a previous run wrote (for <c>--overwrite</c>); the lock and config.json stay.</summary>
    public void Clear()
    {
        foreach (var folder in new[] { System.IO.Path.Combine(Path, "checkpoints"), AdapterDirectory, TensorBoardDirectory, System.IO.Path.Combine(Path, "model") })
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        foreach (var file in new[] { MetricsFile, ReportFile, System.IO.Path.Combine(Path, "predictions.json") })
            if (File.Exists(file)) File.Delete(file);
    }

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
    /// <remarks>
    /// A last line cut short by a kill is the interrupted append and is dropped; a damaged line before it is an error
    /// naming the file and the line.
    /// </remarks>
    public void TruncateMetricsAfter(int step)
    {
        if (!File.Exists(MetricsFile)) return;
        var lines = File.ReadAllLines(MetricsFile).Where(l => l.Length > 0).ToList();
        var kept = new List<string>();
        for (int i = 0; i < lines.Count; i++)
        {
            int? lineStep;
            try
            {
                lineStep = JsonNode.Parse(lines[i])?["step"]?.GetValue<int>();
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
            {
                if (i == lines.Count - 1) break;
                throw new BadInputException($"line {i + 1} is not a metrics record ({e.Message}); remove it to resume", MetricsFile);
            }
            if (lineStep <= step) kept.Add(lines[i]);
        }
        AtomicFile.WriteAllText(MetricsFile, string.Concat(kept.Select(l => l + "\n")));
    }
}
