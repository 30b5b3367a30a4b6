using System.CommandLine;
using VlPeft.Analysis;
using VlPeft.Peft;
using VlPeft.Peft.AdaLora;

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
            if (PeftFiles.ReadConfig(adapter) is not AdaLoraConfig { RankPattern: { } pattern })
                throw new BadInputException("the adapter is not AdaLoRA or has no rank_pattern yet", adapter);
            int layers = 1 + pattern.Keys.Select(k => System.Text.RegularExpressions.Regex.Match(k, @"qformer\.encoder\.layer\.(\d+)\."))
                .Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value)).DefaultIfEmpty(-1).Max();
            if (layers == 0) throw new BadInputException("the rank pattern names no Q-Former module", adapter);
            var heatmap = RankHeatmap.FromRankPattern(pattern, layers);
            File.WriteAllText(Path.Combine(dir, "rank_heatmap.csv"), heatmap.ToCsv());
            heatmap.SavePng(Path.Combine(dir, "rank_heatmap.png"), "AdaLoRA final rank per Q-Former sublayer");
            console.Out.Write(heatmap.ToCsv());
            console.Out.WriteLine($"wrote {Path.Combine(dir, "rank_heatmap.png")} and rank_heatmap.csv");
            return CliApp.Success;
        }));
        return new Command("analyze", "Analyses of finished runs") { ranks };
    }
}
