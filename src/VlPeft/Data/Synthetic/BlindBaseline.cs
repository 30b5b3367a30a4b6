namespace VlPeft.Data.Synthetic;

/// <summary>
/// Text-only baselines that see everything but the image, learnt from the training questions: for
/// each test question, (a) the option text most often correct for the same question and hint in
/// training (falling back to the option most often correct overall), (b) the answer position most
/// often correct for the same question and hint, and (c) the option most often correct for the same
/// set of options, whatever the question. The best of the three on the test split is reported, so a
/// leak through the answer's wording, its position or the options shows up. If the image matters,
/// all stay near chance.
/// </summary>
public static class BlindBaseline
{
    public static (double Accuracy, double Chance) Evaluate(IReadOnlyList<SyntheticQuestion> train, IReadOnlyList<SyntheticQuestion> test)
    {
        static string Question(SyntheticQuestion q) => q.Question + "\u0001" + q.Hint;
        static string Options(SyntheticQuestion q) => string.Join("\u0001", q.Choices.Order(StringComparer.Ordinal));
        var textVotes = Votes(train, Question, q => q.Choices[q.Answer]);
        var positionVotes = Votes(train, Question, q => q.Answer);
        var optionVotes = Votes(train, Options, q => q.Choices[q.Answer]);
        var overall = train.GroupBy(q => q.Choices[q.Answer]).ToDictionary(g => g.Key, g => g.Count());
        int byText = 0, byPosition = 0, byOptions = 0;
        foreach (var q in test)
        {
            var text = textVotes.GetValueOrDefault(Question(q));
            var position = positionVotes.GetValueOrDefault(Question(q));
            var option = optionVotes.GetValueOrDefault(Options(q));
            if (Best(q, i => (Count(text, q.Choices[i]), overall.GetValueOrDefault(q.Choices[i])))) byText++;
            if (Best(q, i => (Count(position, i), 0))) byPosition++;
            if (Best(q, i => (Count(option, q.Choices[i]), 0))) byOptions++;
        }
        return (100.0 * Math.Max(byText, Math.Max(byPosition, byOptions)) / test.Count, 100.0 * test.Average(q => 1.0 / q.Choices.Count));
    }

    /// <summary>For each key, how often each answer was correct in training.</summary>
    static Dictionary<string, Dictionary<T, int>> Votes<T>(IReadOnlyList<SyntheticQuestion> train, Func<SyntheticQuestion, string> key, Func<SyntheticQuestion, T> answer)
        where T : notnull =>
        train.GroupBy(key).ToDictionary(g => g.Key, g => g.GroupBy(answer).ToDictionary(a => a.Key, a => a.Count()));

    static int Count<T>(Dictionary<T, int>? votes, T answer) where T : notnull => votes?.GetValueOrDefault(answer) ?? 0;

    /// <summary>Whether the option with the highest (score, tie-break), first on ties, is the correct one.</summary>
    static bool Best(SyntheticQuestion q, Func<int, (int Score, int TieBreak)> score) =>
        Enumerable.Range(0, q.Choices.Count).OrderByDescending(i => score(i)).ThenBy(i => i).First() == q.Answer;
}
