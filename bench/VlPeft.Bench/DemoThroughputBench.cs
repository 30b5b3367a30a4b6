using VlPeft.Data.Synthetic;
using VlPeft.Experiments;

namespace VlPeft.Bench;

/// <summary>
/// Training throughput (samples/s) of the demo's Q-Former LoRA run on the tiny base, with the frozen
/// towers in fp32 and in bf16 (adapters, query tokens and projection stay fp32). Same data, seed and
/// epochs; the figures come from the trainer's own measurement.
/// </summary>
static class DemoThroughputBench
{
    public static int Run(string[] args)
    {
        string root = Path.Combine(Path.GetTempPath(), "vlpeft-bench-demo");
        string data = Path.Combine(root, "data");
        if (!Directory.Exists(data)) SyntheticSuite.Generate(new SyntheticOptions { Task = "iconqa", Train = 480, Val = 48, Test = 48, Seed = 1 }, data);
        string baseModel = FindBase();
        // Two rounds, round-robin, best of each: the first round also pays for JIT and allocator warm-up.
        var best = new Dictionary<string, double>();
        for (int round = 0; round < 2; round++)
        foreach (var method in new[] { "qformer-lora-all", "qformer-llm-lora" })
            foreach (var dtype in new[] { "f32", "bf16" })
            {
                var config = new ExperimentConfig
                {
                    Name = $"{method}-{dtype}", Task = "iconqa", Data = data,
                    Model = new ExperimentConfig.ModelSection { Path = baseModel, Dtype = dtype },
                    Peft = new() { ["preset"] = method, ["r"] = 4 },
                    Training = new ExperimentConfig.TrainingSection { Epochs = 2, BatchSize = 16, Lr = 2e-3, Patience = null },
                };
                var result = ExperimentRunner.Run(config, Path.Combine(root, "runs", config.Name), overwrite: true);
                best[config.Name] = Math.Max(best.GetValueOrDefault(config.Name), result.SamplesPerSecond);
            }
        foreach (var (name, samples) in best) Console.WriteLine($"{name,-24} {samples,7:F1} training samples/s (frozen towers in the named dtype)");
        return 0;
    }

    static string FindBase()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "models", "tiny-instructblip");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException("run from the repository (models/tiny-instructblip not found)");
    }
}
