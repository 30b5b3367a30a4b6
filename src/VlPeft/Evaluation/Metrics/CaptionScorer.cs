using System.Diagnostics;
using VlPeft.Data;

namespace VlPeft.Evaluation.Metrics;

/// <summary>
/// COCOEvalCap: PTB-tokenize references and hypotheses, then BLEU-1..4, ROUGE-L and CIDEr-D in C#;
/// METEOR and SPICE only through Java (VLPEFT_JAVA, VLPEFT_METEOR_JAR, VLPEFT_SPICE_JAR), otherwise
/// reported as skipped.
/// </summary>
public static class CaptionScorer
{
    public static ScoreReport Score(IReadOnlyList<CaptionRecord> records, IReadOnlyDictionary<string, string> predictions)
    {
        var refs = records.ToDictionary(r => r.ImageId, r => (IReadOnlyList<string>)r.References.Select(PtbTokenizer.Tokenize).ToList());
        var hyps = records.ToDictionary(r => r.ImageId, r => PtbTokenizer.Tokenize(predictions[r.ImageId]));
        var bleu = CaptionMetrics.Bleu(hyps, refs);
        var metrics = new Dictionary<string, object>
        {
            ["Bleu_1"] = bleu[0], ["Bleu_2"] = bleu[1], ["Bleu_3"] = bleu[2], ["Bleu_4"] = bleu[3],
            ["ROUGE_L"] = CaptionMetrics.RougeL(hyps, refs),
            ["CIDEr"] = CaptionMetrics.CiderD(hyps, refs),
        };
        var skipped = new List<string>();
        foreach (var (metric, jarVariable) in new[] { ("METEOR", "VLPEFT_METEOR_JAR"), ("SPICE", "VLPEFT_SPICE_JAR") })
        {
            string? java = Environment.GetEnvironmentVariable("VLPEFT_JAVA");
            string? jar = Environment.GetEnvironmentVariable(jarVariable);
            if (java is null || jar is null || !File.Exists(jar)) skipped.Add($"{metric} skipped: needs Java (set VLPEFT_JAVA and {jarVariable})");
            else if (metric == "METEOR") metrics[metric] = Meteor(java, jar, hyps, refs);
            else metrics[metric] = Spice(java, jar, hyps, refs);
        }
        if (skipped.Count > 0) metrics["skipped"] = skipped;
        return new ScoreReport(metrics, new Dictionary<string, long> { ["images"] = records.Count });
    }

    /// <summary>
    /// Runs spice-1.0.jar as pycocoevalcap does (input [{image_id, test, refs}], -subset -silent) and
    /// returns the mean over images of scores.All.f.
    /// </summary>
    static double Spice(string java, string jar, Dictionary<string, string> hyps, Dictionary<string, IReadOnlyList<string>> refs)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"vlpeft-spice-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            string input = Path.Combine(folder, "in.json"), output = Path.Combine(folder, "out.json");
            File.WriteAllText(input, System.Text.Json.JsonSerializer.Serialize(hyps.Select(h => new { image_id = h.Key, test = h.Value, refs = refs[h.Key] })));
            var start = new ProcessStartInfo(java, new[] { "-jar", "-Xmx8G", jar, input, "-cache", Path.Combine(folder, "cache"), "-out", output, "-subset", "-silent" })
            { UseShellExecute = false };
            using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start java for SPICE");
            process.WaitForExit();
            if (process.ExitCode != 0 || !File.Exists(output)) throw new InvalidOperationException($"SPICE failed (exit code {process.ExitCode})");
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(output));
            return doc.RootElement.EnumerateArray().Average(e => e.GetProperty("scores").GetProperty("All").GetProperty("f").GetDouble());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Runs meteor-1.5.jar in -stdio mode as pycocoevalcap does and returns its corpus score.</summary>
    static double Meteor(string java, string jar, Dictionary<string, string> hyps, Dictionary<string, IReadOnlyList<string>> refs)
    {
        var start = new ProcessStartInfo(java, new[] { "-jar", "-Xmx2G", jar, "-", "-", "-stdio", "-l", "en", "-norm" })
        { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start java for METEOR");
        var stats = new List<string>();
        foreach (var (id, hyp) in hyps)
        {
            string clean = string.Join(' ', hyp.Replace("|||", "").Split(' ', StringSplitOptions.RemoveEmptyEntries));
            process.StandardInput.WriteLine("SCORE ||| " + string.Join(" ||| ", refs[id]) + " ||| " + clean);
            process.StandardInput.Flush();
            stats.Add(process.StandardOutput.ReadLine()!.Trim());
        }
        process.StandardInput.WriteLine("EVAL ||| " + string.Join(" ||| ", stats));
        process.StandardInput.Flush();
        for (int i = 0; i < stats.Count; i++) process.StandardOutput.ReadLine();
        double score = double.Parse(process.StandardOutput.ReadLine()!.Trim(), System.Globalization.CultureInfo.InvariantCulture);
        process.StandardInput.Close();
        process.WaitForExit();
        return score;
    }
}
