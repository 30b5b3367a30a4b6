using System.Diagnostics;
using VlPeft.Analysis;

namespace VlPeft.Bench;

/// <summary>
/// `vlpeft params` on the 7.9B InstructBLIP-Vicuna preset (targets: &lt; 5 s, &lt; 500 MB RSS). Runs in
/// a fresh child process per preset so the peak RSS is that of the counting alone.
/// </summary>
static class ParamsBench
{
    public static int Run(string[] args)
    {
        if (args.Length == 3 && args[0] == "--child") return Child(args[1], args[2]);
        foreach (var (model, plan) in new[] { ("instructblip-vicuna-7b", "qformer-llm-lora"), ("instructblip-flan-t5-xl", "qformer-llm-lora") })
        {
            var child = Process.Start(new ProcessStartInfo(Environment.ProcessPath!, new[] { "params", "--child", model, plan }) { RedirectStandardOutput = true })!;
            Console.Write(child.StandardOutput.ReadToEnd());
            child.WaitForExit();
        }
        return 0;
    }

    static int Child(string model, string plan)
    {
        var watch = Stopwatch.StartNew();
        var summary = ModelParameterSummary.Compute(model, plan, rank: 8, out _);
        double seconds = watch.Elapsed.TotalSeconds;
        long peak = ProcessMemory.PeakRss();
        Console.WriteLine($"{model} + {plan} r=8: total {summary.Total:N0}, trainable {summary.Trainable:N0}; {seconds:F2} s, peak RSS {ProcessMemory.Mb(peak)} (targets < 5 s, < 500 MB)");
        return 0;
    }
}
