using System.Text.Json;
using System.Text.RegularExpressions;
using VlPeft.Data;
using VlPeft.Data.Captions;
using VlPeft.Data.IconQa;
using VlPeft.Data.ScienceQa;
using VlPeft.Data.Vqa;
using VlPeft.Evaluation.Metrics;

namespace VlPeft.Evaluation;

/// <summary>What <c>vlpeft score</c> is asked to do.</summary>
public sealed record ScoreRequest
{
    /// <summary>scienceqa, iconqa, vqav2, vizwiz, coco or flickr30k.</summary>
    public required string Benchmark { get; init; }
    /// <summary>The benchmark as released; VQAv2 may give <see cref="Questions"/> and <see cref="Annotations"/> instead.</summary>
    public string? Data { get; init; }
    public required string Predictions { get; init; }
    /// <summary>Null means the benchmark's usual evaluation split (test; VQAv2: val2014).</summary>
    public string? Split { get; init; }
    public string? Questions { get; init; }
    public string? Annotations { get; init; }
    public bool AllowMissing { get; init; }
    public ScienceQaAnswerRule AnswerRule { get; init; } = ScienceQaAnswerRule.Llava;
    public int Seed { get; init; }
}

/// <summary>A score, the table the papers print (label, metric key), and notes (missing ids, skipped metrics, rules used).</summary>
public sealed record BenchmarkScore(ScoreReport Report, IReadOnlyList<(string Label, string Key)> Table, IReadOnlyList<string> Notes);

/// <summary>Reads a benchmark as released, reads a predictions file, and scores it with the official metric.</summary>
public static class BenchmarkScoring
{
    public static readonly string[] Benchmarks = { "scienceqa", "iconqa", "vqav2", "vizwiz", "coco", "flickr30k" };

    public static BenchmarkScore Score(ScoreRequest request) => request.Benchmark switch
    {
        "scienceqa" => ScienceQa(request),
        "iconqa" => IconQa(request),
        "vqav2" => Vqa(request),
        "vizwiz" => VizWiz(request),
        "coco" or "flickr30k" => Captions(request),
        _ => throw new BadInputException($"unknown benchmark '{request.Benchmark}' (known: {string.Join(", ", Benchmarks)})"),
    };

    static BenchmarkScore ScienceQa(ScoreRequest r)
    {
        string data = RequireData(r);
        bool directory = Directory.Exists(data);
        bool hasSplits = directory && File.Exists(Path.Combine(data, ScienceQaReader.SplitsFile));
        var records = ScienceQaReader.Read(data, hasSplits ? r.Split ?? "test" : null).Records;
        var raw = PredictionFile.ReadKeyed(r.Predictions);
        var missing = PredictionFile.CheckIds(raw, records.Select(x => x.Id), r.AllowMissing, r.Predictions);
        var parser = new ScienceQaAnswerParser(r.AnswerRule, r.Seed);
        var predictions = records.ToDictionary(x => x.Id, x => raw.TryGetValue(x.Id, out var v) ? ScienceQaIndex(v, x, parser, r.Predictions) : -1);
        var notes = new List<string> { $"scored {records.Count} problems ({(hasSplits ? $"split {r.Split ?? "test"}" : "all records of problems.json")}); generated text parsed with the {r.AnswerRule} rule" };
        if (missing.Count > 0) notes.Add($"{missing.Count} problem(s) without a prediction counted as wrong");
        return new BenchmarkScore(ScienceQaScorer.Score(records, predictions), ScienceQaScorer.Columns, notes);
    }

    static int ScienceQaIndex(JsonElement value, ChoiceRecord record, ScienceQaAnswerParser parser, string file) => value.ValueKind switch
    {
        JsonValueKind.Number when value.TryGetInt32(out int i) => i,
        JsonValueKind.String when int.TryParse(value.GetString(), out int i) => i,
        JsonValueKind.String => parser.Parse(value.GetString()!, record.Choices.Count),
        _ => throw new BadInputException($"prediction for '{record.Id}' must be a letter, an index or generated text", file),
    };

    static BenchmarkScore IconQa(ScoreRequest r)
    {
        var records = IconQaReader.Read(RequireData(r), r.Split ?? "test").Records;
        var raw = PredictionFile.ReadKeyed(r.Predictions);
        var missing = PredictionFile.CheckIds(raw, records.Select(x => x.Id), r.AllowMissing, r.Predictions);
        var predictions = records.ToDictionary(x => x.Id, x => raw.TryGetValue(x.Id, out var v) ? IconQaIndex(v, x, r.Predictions) : -1);
        var notes = new List<string> { $"scored {records.Count} choose_txt questions" };
        if (missing.Count > 0) notes.Add($"{missing.Count} question(s) without a prediction counted as wrong");
        return new BenchmarkScore(IconQaScorer.Score(records, predictions), new[] { ("Acc", "accuracy") }, notes);
    }

    static readonly Regex OptionPrefix = new(@"^\([a-e]\)\s*", RegexOptions.CultureInvariant);

    /// <summary>An index, or an option's text (also in the "(b) text" form the ranking candidates use).</summary>
    static int IconQaIndex(JsonElement value, ChoiceRecord record, string file)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int i)) return i;
        if (value.ValueKind != JsonValueKind.String) throw new BadInputException($"prediction for '{record.Id}' must be an index or an option's text", file);
        string text = value.GetString()!;
        if (int.TryParse(text, out i)) return i;
        int exact = record.Choices.ToList().IndexOf(text);
        return exact >= 0 ? exact : record.Choices.ToList().IndexOf(OptionPrefix.Replace(text, ""));
    }

    static BenchmarkScore Vqa(ScoreRequest r)
    {
        string split = r.Split ?? "val2014";
        var (questions, annotations) = r.Questions != null && r.Annotations != null ? (r.Questions, r.Annotations) : VqaReader.FilesIn(RequireData(r), split);
        var records = VqaReader.Read(questions, annotations);
        var (filled, notes) = OpenAnswers(records, r, "question_id");
        return new BenchmarkScore(VqaScorer.Score(records, filled), new[] { ("Overall", "overall") }, notes);
    }

    /// <summary>The predicted answer of every question (missing ones empty, when allowed) and notes saying how many.</summary>
    static (Dictionary<string, string> Filled, List<string> Notes) OpenAnswers(IReadOnlyList<OpenQuestionRecord> records, ScoreRequest r, string idKey)
    {
        var predictions = PredictionFile.ReadList(r.Predictions, idKey, "answer");
        var missing = PredictionFile.CheckIds(predictions, records.Select(x => x.Id), r.AllowMissing, r.Predictions);
        var filled = records.ToDictionary(x => x.Id, x => predictions.GetValueOrDefault(x.Id, ""));
        var notes = new List<string> { $"scored {records.Count} questions" };
        if (missing.Count > 0) notes.Add($"{missing.Count} question(s) without a prediction scored as empty answers");
        return (filled, notes);
    }

    static BenchmarkScore VizWiz(ScoreRequest r)
    {
        var records = VizWizReader.Read(RequireData(r));
        if (records.Any(x => x.Answers.Count == 0)) throw new BadInputException("annotations have no answers (the test split cannot be scored locally)", r.Data);
        var (filled, notes) = OpenAnswers(records, r, "image");
        return new BenchmarkScore(VizWizScorer.Score(records, filled), new[] { ("Overall", "overall") }, notes);
    }

    static BenchmarkScore Captions(ScoreRequest r)
    {
        var records = CaptionReader.Read(RequireData(r), r.Split);
        var predictions = PredictionFile.ReadList(r.Predictions, "image_id", "caption");
        var missing = PredictionFile.CheckIds(predictions, records.Select(x => x.ImageId), r.AllowMissing, r.Predictions);
        var filled = records.ToDictionary(x => x.ImageId, x => predictions.GetValueOrDefault(x.ImageId, ""));
        var report = CaptionScorer.Score(records, filled);
        var notes = new List<string> { $"scored {records.Count} images; CIDEr-D IDF from these images' references" };
        if (missing.Count > 0) notes.Add($"{missing.Count} image(s) without a caption scored as empty captions");
        if (report.Metrics.TryGetValue("skipped", out var skipped)) notes.AddRange((IEnumerable<string>)skipped);
        var table = new[] { ("B@1", "Bleu_1"), ("B@2", "Bleu_2"), ("B@3", "Bleu_3"), ("B@4", "Bleu_4"), ("METEOR", "METEOR"), ("ROUGE-L", "ROUGE_L"), ("CIDEr", "CIDEr"), ("SPICE", "SPICE") };
        return new BenchmarkScore(report, table.Where(t => report.Metrics.ContainsKey(t.Item2)).ToList(), notes);
    }

    static string RequireData(ScoreRequest r) =>
        r.Data ?? throw new BadInputException(r.Benchmark == "vqav2" ? "give --data, or both --questions and --annotations" : "give --data (the benchmark as released)");
}
