using VlPeft.Data;
using VlPeft.Evaluation.Metrics;

namespace VlPeft.Tests.Evaluation;

public class VqaScoringTests
{
    static string[] Ten(params (string Answer, int Count)[] parts) => parts.SelectMany(p => Enumerable.Repeat(p.Answer, p.Count)).ToArray();

    [Theory]
    [InlineData(0, 0.0)]
    [InlineData(1, 0.3)]
    [InlineData(2, 0.6)]
    [InlineData(3, 0.9)]
    [InlineData(4, 1.0)]
    [InlineData(10, 1.0)]
    public void Leave_one_out_accuracy_has_the_closed_form(int matches, double expected)
    {
        var answers = Ten(("cat", matches), ("dog", 10 - matches));
        Assert.Equal(expected, VqaScorer.LeaveOneOut("cat", answers), 12);
    }

    [Fact]
    public void Normalization_applies_only_when_the_answers_differ()
    {
        // All ten identical: nothing is normalized, so case and articles matter.
        Assert.Equal(0, VqaScorer.QuestionAccuracy("Yes", Ten(("yes", 10))));
        Assert.Equal(1, VqaScorer.QuestionAccuracy("yes", Ten(("yes", 10))));
        // Differing answers: "Two dogs." matches "2 dogs" only after normalization (number word, period).
        Assert.Equal(0.9, VqaScorer.QuestionAccuracy("Two dogs.", Ten(("2 dogs", 3), ("dogs", 7))), 12);
        Assert.Equal(1, VqaScorer.QuestionAccuracy("the red one", Ten(("red 1", 5), ("red", 5))));
        Assert.Equal(1, VqaScorer.QuestionAccuracy("\tdont know\n", Ten(("don't know", 4), ("no", 6))));
    }

    [Theory]
    [InlineData("yes!", "yes")]                 // "!" with no space around: replaced by a space, then stripped by split/join
    [InlineData("1,000 people", "1000 people")] // a digit,digit anywhere removes every listed mark
    [InlineData("red, white", "red white")]     // ", " present: the comma is deleted
    [InlineData("3.5 m.", "3.5 m")]             // periods before a digit stay
    [InlineData("A man's hat", "man's hat")]    // article dropped, apostrophe kept
    [InlineData("whats up", "what's up")]       // contraction table
    [InlineData("Three & four", "3 & 4")]       // & is not punctuation
    public void Official_normalization_steps(string input, string expected) =>
        Assert.Equal(expected, VqaAnswerNormalizer.Vqa.Normalize(input));

    [Fact]
    public void Period_stripping_stops_after_32_replacements()
    {
        string dots = new string('.', 40) + "a";
        Assert.Equal(new string('.', 8) + "a", VqaAnswerNormalizer.Vqa.Punctuation(dots));
    }

    [Fact]
    public void Scores_round_per_type_from_unrounded_means()
    {
        var records = new[]
        {
            new OpenQuestionRecord { Id = "1", Question = "q", Answers = Ten(("2", 10)), QuestionType = "how many", AnswerType = "number" },
            new OpenQuestionRecord { Id = "2", Question = "q", Answers = Ten(("red", 1), ("blue", 9)), QuestionType = "what color", AnswerType = "other" },
            new OpenQuestionRecord { Id = "3", Question = "q", Answers = Ten(("yes", 2), ("no", 8)), QuestionType = "is the", AnswerType = "yes/no" },
        };
        var predictions = new Dictionary<string, string> { ["1"] = "2", ["2"] = "red", ["3"] = "yes" };
        var m = VqaScorer.Score(records, predictions).Metrics;
        Assert.Equal(PythonNumbers.Round(100 * (1 + 0.3 + 0.6) / 3), m["overall"]); // 63.33
        Assert.Equal(63.33, (double)m["overall"]);
        var perAnswer = (Dictionary<string, double>)m["perAnswerType"];
        Assert.Equal(30.0, perAnswer["other"]);
        Assert.Equal(60.0, perAnswer["yes/no"]);
        Assert.Equal(100.0, ((Dictionary<string, double>)m["perQuestionType"])["how many"]);
    }

    [Fact]
    public void Vizwiz_normalizes_the_prediction_only_with_typographic_contractions()
    {
        // GT is compared as stored: the prediction is normalized, so "Unanswerable" matches "unanswerable".
        Assert.Equal(1, VizWizScorer.QuestionAccuracy("Unanswerable", Ten(("unanswerable", 10))));
        // dont → don’t (U+2019) in VizWiz's table, which does not equal the ASCII "don't" of a GT answer.
        Assert.Equal(0, VizWizScorer.QuestionAccuracy("dont know", Ten(("don't know", 10))));
        Assert.Equal(1, VizWizScorer.QuestionAccuracy("dont know", Ten(("don\u2019t know", 10))));
        // GT is not normalized: a GT "Yes." never matches.
        Assert.Equal(0, VizWizScorer.QuestionAccuracy("yes", Ten(("Yes.", 10))));
        Assert.Equal("can't", VqaAnswerNormalizer.VizWiz.Normalize("cant")); // one of the ASCII exceptions
    }
}
