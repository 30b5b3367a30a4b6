using VlPeft.Data;

namespace VlPeft.Evaluation.Metrics;

/// <summary>
/// The official ScienceQA accuracy (lupantech/ScienceQA tools/evaluate_acc.py): overall and by
/// category — NAT/SOC/LAN (subject), TXT (non-empty hint), IMG (has image), NO (neither),
/// G1-6 / G7-12 (grade) and per topic — each as "{:.2f}" of 100·correct/count, or the integer −1
/// for an empty group. Groups overlap. A prediction of −1 (unparsable) is wrong.
/// </summary>
public static class ScienceQaScorer
{
    public static readonly string[] Topics =
    {
        "punctuation", "literacy-in-science", "verbs", "pronouns", "civics", "culture", "word-study", "economics", "physics",
        "units-and-measurement", "science-and-engineering-practices", "reading-comprehension", "global-studies", "grammar",
        "figurative-language", "us-history", "writing-strategies", "world-history", "reference-skills", "biology",
        "earth-science", "phonological-awareness", "capitalization", "chemistry", "vocabulary", "geography",
    };

    /// <summary>The paper table's columns: (label, official key).</summary>
    public static readonly (string Label, string Key)[] Columns =
    {
        ("NAT", "acc_natural"), ("SOC", "acc_social"), ("LAN", "acc_language"), ("TXT", "acc_has_text"), ("IMG", "acc_has_image"),
        ("NO", "acc_no_context"), ("G1-6", "acc_grade_1_6"), ("G7-12", "acc_grade_7_12"), ("Avg", "acc_average"),
    };

    static readonly HashSet<string> LowerGrades = new() { "grade1", "grade2", "grade3", "grade4", "grade5", "grade6" };
    static readonly HashSet<string> UpperGrades = new() { "grade7", "grade8", "grade9", "grade10", "grade11", "grade12" };

    public static ScoreReport Score(IReadOnlyList<ChoiceRecord> records, IReadOnlyDictionary<string, int> predictions)
    {
        var groups = new (string Key, Func<ChoiceRecord, bool> In)[]
        {
            ("acc_natural", r => r.Subject == "natural science"),
            ("acc_social", r => r.Subject == "social science"),
            ("acc_language", r => r.Subject == "language science"),
            ("acc_has_text", r => r.HasText),
            ("acc_has_image", r => r.HasImage),
            ("acc_no_context", r => !r.HasText && !r.HasImage),
            ("acc_grade_1_6", r => LowerGrades.Contains(r.Grade)),
            ("acc_grade_7_12", r => UpperGrades.Contains(r.Grade)),
            ("acc_average", _ => true),
        }.Concat(Topics.Select(t => ($"acc_{t}", (Func<ChoiceRecord, bool>)(r => r.Topic == t))));

        var metrics = new Dictionary<string, object>();
        var counts = new Dictionary<string, long>();
        foreach (var (key, inGroup) in groups)
        {
            var members = records.Where(inGroup).ToList();
            int correct = members.Count(r => predictions[r.Id] == r.Answer);
            counts[key] = members.Count;
            metrics[key] = members.Count == 0 ? -1 : PythonNumbers.Fixed(100.0 * correct / members.Count);
        }
        counts["correct"] = records.Count(r => predictions[r.Id] == r.Answer);
        // The official code counts them as wrong too; say so, since an index past the choices is usually an off-by-one upstream.
        var outside = records.Where(r => predictions[r.Id] < 0 || predictions[r.Id] >= r.Choices.Count).ToList();
        if (outside.Count > 0)
            Log.Warning($"{outside.Count} prediction(s) are not an index into their choices and count as wrong (e.g. {outside[0].Id}: {predictions[outside[0].Id]} of {outside[0].Choices.Count} choices)");
        counts["outside_choices"] = outside.Count;
        return new ScoreReport(metrics, counts);
    }
}

/// <summary>A scorer's output: metric values as the official code formats them, and the counts behind them.</summary>
public sealed record ScoreReport(IReadOnlyDictionary<string, object> Metrics, IReadOnlyDictionary<string, long> Counts);
