using System.Text.Json;
using VlPeft.Data;
using VlPeft.Data.ScienceQa;
using VlPeft.Evaluation.Metrics;

namespace VlPeft.Tests.Evaluation;

public class ScienceQaScoringTests
{
    static ChoiceRecord R(string id, string subject, string grade, string hint, bool image, string topic, int answer = 0) => new()
    {
        Id = id, Question = "q", Choices = new[] { "x", "y", "z" }, Answer = answer,
        Subject = subject, Grade = grade, Hint = hint, HasImage = image, Topic = topic,
    };

    [Fact]
    public void Categories_overlap_format_as_python_and_empty_groups_are_minus_one()
    {
        var records = new[]
        {
            R("1", "natural science", "grade2", "a hint", true, "biology"),
            R("2", "natural science", "grade8", "", true, "biology"),
            R("3", "social science", "grade3", "", false, "geography"),
            R("4", "natural science", "grade11", "hint", false, "physics"),
            R("5", "social science", "grade5", "", false, "geography"),
            R("6", "natural science", "grade1", "", false, "physics"),
        };
        // Correct: 1, 2, 4, 6 (3 and 5 wrong, 5 via the −1 of an unparsable answer).
        var predictions = new Dictionary<string, int> { ["1"] = 0, ["2"] = 0, ["3"] = 2, ["4"] = 0, ["5"] = -1, ["6"] = 0 };
        var m = ScienceQaScorer.Score(records, predictions).Metrics;
        Assert.Equal("100.00", m["acc_natural"]);     // 1, 2, 4, 6
        Assert.Equal("0.00", m["acc_social"]);        // 3, 5
        Assert.Equal(-1, m["acc_language"]);          // nobody
        Assert.Equal("100.00", m["acc_has_text"]);    // 1, 4
        Assert.Equal("100.00", m["acc_has_image"]);   // 1, 2
        Assert.Equal("33.33", m["acc_no_context"]);   // 3, 5, 6 → 1/3
        Assert.Equal("50.00", m["acc_grade_1_6"]);    // 1, 3, 5, 6 → 2/4
        Assert.Equal("100.00", m["acc_grade_7_12"]);  // 2, 4
        Assert.Equal("66.67", m["acc_average"]);      // 4/6
        Assert.Equal("100.00", m["acc_physics"]);
        Assert.Equal("0.00", m["acc_geography"]);
        Assert.Equal(-1, m["acc_chemistry"]);
    }

    [Fact]
    public void Real_sample_categories_match_counts_made_directly_from_the_json()
    {
        string path = SharedData.Path("scienceqa", "problems_sample.json");
        var records = ScienceQaReader.Read(path, split: null).Records;
        Assert.Equal(358, records.Count);
        // Made-up predictions: right when the pid is even, otherwise the next choice (wrong).
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var predictions = new Dictionary<string, int>();
        var counted = new Dictionary<string, (int Correct, int Total)>();
        void Count(string key, bool correct) { var (c, t) = counted.GetValueOrDefault(key); counted[key] = (c + (correct ? 1 : 0), t + 1); }
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            int answer = p.Value.GetProperty("answer").GetInt32();
            int choices = p.Value.GetProperty("choices").GetArrayLength();
            bool right = int.Parse(p.Name) % 2 == 0;
            predictions[p.Name] = right ? answer : (answer + 1) % choices;
            string subject = p.Value.GetProperty("subject").GetString()!;
            bool text = p.Value.GetProperty("hint").GetString()!.Length > 0;
            bool image = p.Value.GetProperty("image").ValueKind != JsonValueKind.Null;
            int grade = int.Parse(p.Value.GetProperty("grade").GetString()!["grade".Length..]);
            Count(subject, right);
            if (text) Count("text", right);
            if (image) Count("image", right);
            if (!text && !image) Count("none", right);
            Count(grade <= 6 ? "low" : "high", right);
            Count("all", right);
        }
        var report = ScienceQaScorer.Score(records, predictions);
        foreach (var (key, group) in new[] { ("acc_natural", "natural science"), ("acc_social", "social science"), ("acc_language", "language science"),
                     ("acc_has_text", "text"), ("acc_has_image", "image"), ("acc_no_context", "none"), ("acc_grade_1_6", "low"), ("acc_grade_7_12", "high"), ("acc_average", "all") })
        {
            var (c, t) = counted[group];
            Assert.Equal(t, report.Counts[key]);
            Assert.Equal(PythonNumbers.Fixed(100.0 * c / t), report.Metrics[key]);
        }
        Assert.All(counted.Values, v => Assert.True(v.Total > 0)); // every category is populated in the sample
        Assert.Equal(0, report.Counts["outside_choices"]);
        var first = records[0];
        var shifted = new Dictionary<string, int>(predictions) { [first.Id] = first.Choices.Count };   // one past the last choice
        var outside = ScienceQaScorer.Score(records, shifted);
        Assert.Equal(1, outside.Counts["outside_choices"]);
        Assert.Equal(report.Counts["correct"] - (predictions[first.Id] == first.Answer ? 1 : 0), outside.Counts["correct"]);
    }

    [Theory]
    // text, choices, official (seed-free cases), lavin, llava
    [InlineData("The answer is B.", 3, 1, 1, 1)]
    [InlineData("The answer is B!", 3, 1, 1, 1)]           // unescaped '.' matches any character
    [InlineData("B", 3, -9, -9, 1)]                         // bare letter: LLaVA only
    [InlineData("C. because", 3, -9, -9, 2)]                // "X. …": LLaVA only
    [InlineData("The answer is A. The answer is C.", 3, -9, 0, -1)] // two matches: official fails, LaVIN takes the first
    [InlineData("The answer is D.", 3, -9, -9, -1)]         // D is not among 3 choices
    [InlineData("the answer is a.", 3, -9, -9, -1)]         // case-sensitive
    [InlineData("The answer is B", 3, -9, -9, -1)]          // nothing after the letter: no match
    public void Answer_extraction_follows_each_published_rule(string text, int choices, int official, int lavin, int llava)
    {
        // −9 marks "falls back to a random valid index".
        void Check(ScienceQaAnswerRule rule, int expected)
        {
            int got = new ScienceQaAnswerParser(rule, seed: 7).Parse(text, choices);
            if (expected == -9) Assert.InRange(got, 0, choices - 1);
            else Assert.Equal(expected, got);
        }
        Check(ScienceQaAnswerRule.Official, official);
        Check(ScienceQaAnswerRule.Lavin, lavin);
        Assert.Equal(llava, new ScienceQaAnswerParser(ScienceQaAnswerRule.Llava).Parse(text, choices));
    }

    [Fact]
    public void Random_fallback_is_deterministic_for_a_seed()
    {
        var a = Enumerable.Range(0, 20).Select(_ => 0).Select((_, i) => new ScienceQaAnswerParser(ScienceQaAnswerRule.Official, 5)).First();
        var b = new ScienceQaAnswerParser(ScienceQaAnswerRule.Official, 5);
        var first = Enumerable.Range(0, 20).Select(_ => a.Parse("no answer", 4)).ToList();
        var second = Enumerable.Range(0, 20).Select(_ => b.Parse("no answer", 4)).ToList();
        Assert.Equal(first, second);
        Assert.True(first.Distinct().Count() > 1);
    }
}
