using StbImageSharp;
using VlPeft.Analysis;
using VlPeft.Peft;
using VlPeft.Peft.AdaLora;
using VlPeft.Tests.Cli;

namespace VlPeft.Tests.Experiments;

public class AnalysisTests
{
    [Fact]
    public void Rank_heatmap_averages_within_sublayer_groups_and_leaves_missing_cross_attention_empty()
    {
        var ranks = new Dictionary<string, int>
        {
            ["qformer.encoder.layer.0.attention.attention.query.lora_E"] = 4,
            ["qformer.encoder.layer.0.attention.attention.value.lora_E"] = 2,      // self: (4 + 2) / 2 = 3
            ["qformer.encoder.layer.0.crossattention.attention.key.lora_E"] = 6,
            ["qformer.encoder.layer.0.crossattention.output.dense.lora_E"] = 0,    // cross: 3
            ["qformer.encoder.layer.0.intermediate.dense.lora_E"] = 1,
            ["qformer.encoder.layer.0.output_query.dense.lora_E"] = 5,             // FFN: 3
            ["qformer.encoder.layer.1.attention.attention.query.lora_E"] = 8,      // layer 1: no cross-attention
            ["qformer.encoder.layer.1.output.dense.lora_E"] = 7,
        };
        var heatmap = RankHeatmap.FromRanks(ranks, 2);
        Assert.Equal(3, heatmap.MeanRank[0, 0]);
        Assert.Equal(3, heatmap.MeanRank[0, 1]);
        Assert.Equal(3, heatmap.MeanRank[0, 2]);
        Assert.Equal(8, heatmap.MeanRank[1, 0]);
        Assert.True(double.IsNaN(heatmap.MeanRank[1, 1]));
        Assert.Equal("layer,self-attention,cross-attention,FFN\n0,3,3,3\n1,8,,7\n", heatmap.ToCsv());
    }

    [Fact]
    public void Analyze_ranks_writes_a_real_png_and_csv_from_an_adalora_adapter()
    {
        using var dir = new TempDirectory();
        var pattern = new Dictionary<string, bool[]>
        {
            ["qformer.encoder.layer.0.attention.attention.query.lora_E"] = new[] { true, true, false },
            ["qformer.encoder.layer.0.crossattention.attention.value.lora_E"] = new[] { true, false, false },
            ["qformer.encoder.layer.1.intermediate_query.dense.lora_E"] = new[] { true, true, true },
        };
        var config = new AdaLoraConfig { TargetModules = ModuleSelector.FromRegex("x"), InitR = 3, TargetR = 2, TotalStep = 10, RankPattern = pattern };
        Directory.CreateDirectory(dir.File("adapter"));
        File.WriteAllText(dir.File("adapter/adapter_config.json"), config.ToJsonText());
        var (code, output, error) = CliRunner.Run("analyze", "ranks", dir.Path);
        Assert.True(code == 0, error);
        Assert.Equal("layer,self-attention,cross-attention,FFN\n0,2,1,\n1,,,3\n", File.ReadAllText(dir.File("rank_heatmap.csv")));
        var png = ImageResult.FromMemory(File.ReadAllBytes(dir.File("rank_heatmap.png")), ColorComponents.RedGreenBlue);
        Assert.Equal((640, 520), (png.Width, png.Height));
        Assert.Contains("rank_heatmap.png", output);

        // A layer index far beyond any model is refused rather than drawn as a million-row table.
        var absurd = config with { RankPattern = new Dictionary<string, bool[]> { ["qformer.encoder.layer.999999.intermediate.dense.lora_E"] = new[] { true, false, false } } };
        File.WriteAllText(dir.File("adapter/adapter_config.json"), absurd.ToJsonText());
        var refused = CliRunner.Run("analyze", "ranks", dir.Path);
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("layer 999999", refused.Err);

        File.WriteAllText(dir.File("adapter/adapter_config.json"), new VlPeft.Peft.Lora.LoraConfig { TargetModules = ModuleSelector.FromNames("q") }.ToJsonText());
        var lora = CliRunner.Run("analyze", "ranks", dir.Path);
        Assert.Equal(2, lora.ExitCode);
        Assert.Contains("did not learn ranks", lora.Err);
    }

    [Fact]
    public void Learning_curves_render_from_metrics_jsonl()
    {
        using var dir = new TempDirectory();
        File.WriteAllLines(dir.File("metrics.jsonl"), new[]
        {
            "{\"step\":1,\"epoch\":0.5,\"loss\":2.0,\"lr\":0.1}", "{\"step\":2,\"epoch\":1,\"loss\":1.5,\"lr\":0.1}", "{\"step\":2,\"epoch\":1,\"val_metric\":40}",
            "{\"step\":3,\"epoch\":1.5,\"loss\":1.2,\"lr\":0.1}", "{\"step\":4,\"epoch\":2,\"loss\":1.0,\"lr\":0.1}", "{\"step\":4,\"epoch\":2,\"val_metric\":55}",
        });
        LearningCurves.SavePng(dir.File("metrics.jsonl"), dir.File("curves.png"), "demo");
        var png = ImageResult.FromMemory(File.ReadAllBytes(dir.File("curves.png")), ColorComponents.RedGreenBlue);
        Assert.Equal((720, 420), (png.Width, png.Height));
    }
}
