using System.Diagnostics;

namespace VlPeft.Bench;

static class Timing
{
    /// <summary>
    /// Median seconds per call of each variant, measured round-robin (one call of each per round)
    /// so that the shared machine's speed drifts affect all variants alike.
    /// </summary>
    public static double[] MedianSeconds(int warmup, int rounds, params Action[] variants)
    {
        foreach (var v in variants) for (int i = 0; i < warmup; i++) v();
        var samples = variants.Select(_ => new List<double>()).ToArray();
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < variants.Length; i++)
            {
                var watch = Stopwatch.StartNew();
                variants[i]();
                samples[i].Add(watch.Elapsed.TotalSeconds);
            }
        return samples.Select(s => s.OrderBy(x => x).ElementAt(s.Count / 2)).ToArray();
    }
}
