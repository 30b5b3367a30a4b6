using System.Text.Json.Nodes;

namespace VlPeft.Analysis;

/// <summary>Training loss and validation metric against the optimizer step, from a run's metrics.jsonl, as a PNG.</summary>
public static class LearningCurves
{
    public static void SavePng(string metricsJsonl, string path, string title)
    {
        if (!File.Exists(metricsJsonl)) throw new BadInputException("metrics file not found", metricsJsonl);
        var rows = File.ReadLines(metricsJsonl).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!).ToList();
        double[] Values(string key, out double[] steps)
        {
            var points = rows.Where(r => r[key] != null).Select(r => (r["step"]!.GetValue<double>(), r[key]!.GetValue<double>())).ToList();
            steps = points.Select(p => p.Item1).ToArray();
            return points.Select(p => p.Item2).ToArray();
        }
        var plot = new ScottPlot.Plot();
        var loss = Values("loss", out var lossSteps);
        if (loss.Length > 0) plot.Add.Scatter(lossSteps, loss).LegendText = "train loss";
        var val = Values("val_metric", out var valSteps);
        if (val.Length > 0)
        {
            var axis = plot.Axes.Right;
            var scatter = plot.Add.Scatter(valSteps, val);
            scatter.Axes.YAxis = axis;
            scatter.LegendText = "validation metric (right axis)";
        }
        plot.ShowLegend();
        plot.Title(title);
        plot.XLabel("optimizer step");
        plot.YLabel("loss");
        plot.SavePng(path, 720, 420);
    }
}
