using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace VlPeft.Analysis;

/// <summary>
/// The Q-Former PEFT paper's Figure 3: AdaLoRA final ranks averaged within each sublayer group
/// (self-attention, cross-attention, FFN) for every Q-Former layer. Cells of layers without
/// cross-attention are empty (NaN). Input: AdaLoRA rank_pattern (module → kept mask) or final ranks.
/// </summary>
public sealed record RankHeatmap(IReadOnlyList<int> Layers, IReadOnlyList<string> Sublayers, double[,] MeanRank)
{
    public static readonly string[] Groups = { "self-attention", "cross-attention", "FFN" };
    static readonly Regex Path = new(@"qformer\.encoder\.layer\.(\d+)\.(.+?)(?:\.lora_E)?$", RegexOptions.CultureInvariant);

    /// <summary>Sublayer group of a Q-Former module path (null for modules outside the three groups).</summary>
    public static string? GroupOf(string module) =>
        module.StartsWith("attention.attention.") ? Groups[0]
        : module.StartsWith("crossattention.") ? Groups[1]
        : module is "intermediate.dense" or "output.dense" or "intermediate_query.dense" or "output_query.dense" ? Groups[2]
        : null;

    public static RankHeatmap FromRanks(IReadOnlyDictionary<string, int> finalRanks, int layerCount)
    {
        var sums = new double[layerCount, Groups.Length];
        var counts = new int[layerCount, Groups.Length];
        foreach (var (path, rank) in finalRanks)
        {
            var m = Path.Match(path);
            if (!m.Success) continue;
            int layer = int.Parse(m.Groups[1].Value);
            if (GroupOf(m.Groups[2].Value) is not string group || layer >= layerCount) continue;
            int g = Array.IndexOf(Groups, group);
            sums[layer, g] += rank;
            counts[layer, g]++;
        }
        var mean = new double[layerCount, Groups.Length];
        for (int l = 0; l < layerCount; l++)
            for (int g = 0; g < Groups.Length; g++)
                mean[l, g] = counts[l, g] == 0 ? double.NaN : sums[l, g] / counts[l, g];
        return new RankHeatmap(Enumerable.Range(0, layerCount).ToList(), Groups, mean);
    }

    /// <summary>Layers are counted from the paths (the highest Q-Former layer index + 1); an absurd index is refused.</summary>
    public static RankHeatmap FromRanks(IReadOnlyDictionary<string, int> finalRanks, string? source = null)
    {
        var layers = finalRanks.Keys.Select(k => Path.Match(k)).Where(m => m.Success).Select(m => long.Parse(m.Groups[1].Value)).ToList();
        if (layers.Count == 0) throw new BadInputException("the ranks name no Q-Former module (qformer.encoder.layer.<i>.…)", source);
        long count = layers.Max() + 1;
        if (count > MaxLayers) throw new BadInputException($"a rank names Q-Former layer {count - 1}; at most {MaxLayers} layers are drawn", source);
        return FromRanks(finalRanks, (int)count);
    }

    const int MaxLayers = 1024;

    /// <summary>The heatmap of a saved adapter whose method learned its ranks (AdaLoRA's rank_pattern).</summary>
    public static RankHeatmap FromAdapter(string adapterDirectory)
    {
        var ranks = Peft.PeftFiles.ReadConfig(adapterDirectory).LearnedRanks()
            ?? throw new BadInputException("the adapter's method did not learn ranks (AdaLoRA with a rank_pattern does)", adapterDirectory);
        return FromRanks(ranks, adapterDirectory);
    }

    /// <summary>From an AdaLoRA adapter_config.json rank_pattern (module.lora_E → kept mask).</summary>
    public static RankHeatmap FromRankPattern(IReadOnlyDictionary<string, bool[]> pattern, int layerCount) =>
        FromRanks(pattern.ToDictionary(kv => kv.Key, kv => kv.Value.Count(k => k)), layerCount);

    public string ToCsv()
    {
        var s = new StringBuilder("layer," + string.Join(",", Sublayers) + "\n");
        foreach (int l in Layers)
            s.Append(l).Append(',').AppendJoin(',', Enumerable.Range(0, Sublayers.Count)
                .Select(g => double.IsNaN(MeanRank[l, g]) ? "" : MeanRank[l, g].ToString("0.###", CultureInfo.InvariantCulture))).Append('\n');
        return s.ToString();
    }

    /// <summary>A PNG heatmap: rows = layers (0 at the top), columns = sublayer groups, empty cells blank.</summary>
    public void SavePng(string path, string title)
    {
        var plot = new ScottPlot.Plot();
        var data = new double[Layers.Count, Sublayers.Count];
        for (int l = 0; l < Layers.Count; l++)
            for (int g = 0; g < Sublayers.Count; g++) data[l, g] = MeanRank[l, g];
        var heatmap = plot.Add.Heatmap(data);   // row 0 is drawn at the top
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(heatmap);
        plot.Title(title);
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, Sublayers.Count).Select(i => (double)i).ToArray(), Sublayers.ToArray());
        plot.Axes.Left.SetTicks(Enumerable.Range(0, Layers.Count).Select(i => (double)(Layers.Count - 1 - i)).ToArray(), Layers.Select(l => $"layer {l}").ToArray());
        plot.XLabel("sublayer");
        plot.YLabel("Q-Former layer");
        plot.SavePng(path, 640, 520);
    }
}
