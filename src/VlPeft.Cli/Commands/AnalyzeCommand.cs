using System.CommandLine;
using VlPeft.Analysis;
using VlPeft.Peft;

namespace VlPeft.Cli.Commands;

static class AnalyzeCommand
{
    public static Command Create(CliConsole console)
    {
        var runDir = new Argument<string>("run-dir") { Description = "A finished AdaLoRA run (its adapter/adapter_config.json holds the rank pattern)" };
        var ranks = new Command("ranks", "Q-Former layer × sublayer heatmap (PNG + CSV) of AdaLoRA's final ranks") { runDir };
        ranks.SetAction(parse => CliApp.Guard(console, () =>
        {
            string dir = parse.GetValue(runDir)!;
            string adapter = Directory.Exists(Path.Combine(dir, "adapter")) ? Path.Combine(dir, "adapter") : dir;
            var heatmap = RankHeatmap.FromAdapter(adapter);
            File.WriteAllText(Path.Combine(dir, "rank_heatmap.csv"), heatmap.ToCsv());
            heatmap.SavePng(Path.Combine(dir, "rank_heatmap.png"), "AdaLoRA final rank per Q-Former sublayer");
            console.Out.Write(heatmap.ToCsv());
            console.Out.WriteLine($"wrote {Path.Combine(dir, "rank_heatmap.png")} and rank_heatmap.csv");
            return CliApp.Success;
        }));
        return new Command("analyze", "Analyses of finished runs") { ranks };
    }
}
