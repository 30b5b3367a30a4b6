using System.Diagnostics;
using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Bench;

/// <summary>
/// Peak RSS while loading a safetensors file (target: ≤ 1.2 GB for a 1 GB file, i.e. no second
/// copy). The file is written by this process, then loaded by a fresh child process so the
/// writer's memory does not count.
/// </summary>
static class SafetensorsLoadBench
{
    public static int Run(string[] args)
    {
        if (args.Length == 2 && args[0] == "--child") return Child(args[1]);
        int sizeMb = args.Length > 0 ? int.Parse(args[0]) : 1024;
        string path = Path.Combine(Path.GetTempPath(), $"vlpeft-bench-{sizeMb}mb.safetensors");
        if (!File.Exists(path)) Write(path, sizeMb);

        var child = Process.Start(new ProcessStartInfo(Environment.ProcessPath!, new[] { "safetensors-load", "--child", path })
        { RedirectStandardOutput = true })!;
        string report = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        Console.Write(report);
        File.Delete(path);
        return child.ExitCode;
    }

    static void Write(string path, int sizeMb)
    {
        // 8 F32 tensors of sizeMb/8 each: many real checkpoints hold a few large matrices.
        var tensors = new Dictionary<string, Tensor>();
        long elementsEach = (long)sizeMb * 1048576 / 8 / 4;
        for (int i = 0; i < 8; i++) tensors[$"layer.{i}.weight"] = torch.randn(elementsEach);
        SafetensorsWriter.Write(path, tensors);
        foreach (var t in tensors.Values) t.Dispose();
    }

    static int Child(string path)
    {
        torch.ones(1).Dispose(); // load the native library before the baseline
        long baseline = ProcessMemory.CurrentRss();
        var watch = Stopwatch.StartNew();
        using var checkpoint = TensorCheckpoint.Open(path);
        var loaded = checkpoint.Entries.Select(e => checkpoint.ReadTensor(e.Name)).ToList();
        double seconds = watch.Elapsed.TotalSeconds;
        long fileBytes = new FileInfo(path).Length;
        long peak = ProcessMemory.PeakRss();
        Console.WriteLine($"file                {ProcessMemory.Mb(fileBytes)} ({loaded.Count} tensors)");
        Console.WriteLine($"RSS before load     {ProcessMemory.Mb(baseline)}");
        Console.WriteLine($"peak RSS            {ProcessMemory.Mb(peak)}  (peak − baseline = {ProcessMemory.Mb(peak - baseline)}, {(double)(peak - baseline) / fileBytes:F3}× the file)");
        Console.WriteLine($"load time           {seconds:F2} s ({fileBytes / 1048576.0 / seconds:F0} MB/s)");
        Console.WriteLine($"target              peak ≤ 1.2 × file: {(peak <= 1.2 * fileBytes ? "met" : "NOT met")}");
        foreach (var t in loaded) t.Dispose();
        return 0;
    }
}
