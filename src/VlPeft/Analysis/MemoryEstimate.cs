using VlPeft.Models;

namespace VlPeft.Analysis;

/// <summary>One transformer stack a training step runs: tokens per example at the processor's longest, its width, depth, heads,
/// FFN width, and the vocabulary its logits span (0 when it has no LM head).</summary>
public sealed record TowerShape(string Name, long Tokens, long Hidden, long Layers, long Heads, long FfnWidth, long Vocabulary = 0);

/// <summary>
/// What a training run needs in memory, estimated before anything is allocated (from a model built on the meta device with
/// the plan applied): the weights at their training dtypes, fp32 gradients and AdamW's two moments for the trainable
/// parameters, and the activations kept for the backward pass at the batch size — per layer and example about
/// s·(10·h + 2·f) + 2.5·a·s² elements (Korthikanti et al. 2022, "Reducing activation recomputation", without recomputation),
/// plus logits and their gradient over the vocabulary — at the longest sequences the processors produce, so an upper bound.
/// </summary>
public sealed record MemoryEstimate(long WeightBytes, long GradientBytes, long OptimizerBytes, long ActivationBytes)
{
    public long TotalBytes => WeightBytes + GradientBytes + OptimizerBytes + ActivationBytes;

    /// <param name="model">Built on the meta device, the plan applied (trainable = requires_grad).</param>
    /// <param name="frozenTowersBf16">The experiment's model.dtype bf16: frozen tower weights and their activations take 2 bytes.</param>
    /// <param name="quantizedFormat">model.quantize: the format of a frozen linear weight by parameter name (null: not quantized).</param>
    public static MemoryEstimate Of(VisionLanguageModel model, int batchSize, bool frozenTowersBf16, Func<string, string?>? quantizedFormat = null)
    {
        long weights = 0, trainable = 0;
        foreach (var (name, p) in model.named_parameters())
        {
            long n = p.NumberOfElements;
            bool frozenTower = model.GroupOf(name) is { FrozenTower: true };
            if (!p.requires_grad && quantizedFormat?.Invoke(name) is string format)
                weights += Nn.Quantization.QuantizedWeight.BytesFor(format, p.shape[0], p.shape[1], 2);
            else
                weights += n * (p.requires_grad || !frozenTower || !frozenTowersBf16 ? 4 : 2);
            if (p.requires_grad) trainable += n;
        }
        long activationBytes = frozenTowersBf16 ? 2 : 4;
        double perExample = model.TowerShapes.Sum(t =>
            t.Layers * (t.Tokens * (10.0 * t.Hidden + 2.0 * t.FfnWidth) + 2.5 * t.Heads * t.Tokens * t.Tokens) * activationBytes
            + 2.0 * t.Tokens * t.Vocabulary * 4);   // logits and their gradient, fp32
        return new MemoryEstimate(weights, 4 * trainable, 8 * trainable, (long)(perExample * batchSize));
    }

    /// <summary>Memory this process may use: MemAvailable of /proc/meminfo where there is one, else what the runtime reports.</summary>
    public static long AvailableBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal) && long.TryParse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], out long kb))
                    return kb * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    public static string Gb(long bytes) => bytes < 1e9
        ? (bytes / 1e6).ToString("F1", System.Globalization.CultureInfo.InvariantCulture) + " MB"
        : (bytes / 1e9).ToString("F1", System.Globalization.CultureInfo.InvariantCulture) + " GB";

    public string Describe(int batchSize) =>
        $"weights {Gb(WeightBytes)}, gradients {Gb(GradientBytes)}, AdamW state {Gb(OptimizerBytes)}, activations at batch {batchSize} {Gb(ActivationBytes)} (upper bound): {Gb(TotalBytes)}";
}
