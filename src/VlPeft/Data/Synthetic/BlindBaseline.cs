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
        static string Key(SyntheticQuestion q) => q.Question + "\u0001" + q.Hint;
        var textVotes = train.GroupBy(Key).ToDictionary(g => g.Key, g => g.GroupBy(q => q.Choices[q.Answer]).ToDictionary(a => a.Key, a => a.Count()));
        var positionVotes = train.GroupBy(Key).ToDictionary(g => g.Key, g => g.GroupBy(q => q.Answer).ToDictionary(a => a.Key, a => a.Count()));
        static string Options(SyntheticQuestion q) => string.Join("\u0001", q.Choices.Order(StringComparer.Ordinal));
        var optionVotes = train.GroupBy(Options).ToDictionary(g => g.Key, g => g.GroupBy(q => q.Choices[q.Answer]).ToDictionary(a => a.Key, a => a.Count()));
        var overall = train.GroupBy(q => q.Choices[q.Answer]).ToDictionary(g => g.Key, g => g.Count());
        int byText = 0, byPosition = 0, byOptions = 0;
        foreach (var q in test)
        {
            var votes = textVotes.GetValueOrDefault(Key(q)) ?? new Dictionary<string, int>();
            int best = Enumerable.Range(0, q.Choices.Count)
                .OrderByDescending(i => votes.GetValueOrDefault(q.Choices[i]))
                .ThenByDescending(i => overall.GetValueOrDefault(q.Choices[i]))
                .ThenBy(i => i).First();
            if (best == q.Answer) byText++;
            var positions = positionVotes.GetValueOrDefault(Key(q)) ?? new Dictionary<int, int>();
            if (Enumerable.Range(0, q.Choices.Count).OrderByDescending(i => positions.GetValueOrDefault(i)).ThenBy(i => i).First() == q.Answer) byPosition++;
            var answers = optionVotes.GetValueOrDefault(Options(q)) ?? new Dictionary<string, int>();
            if (Enumerable.Range(0, q.Choices.Count).OrderByDescending(i => answers.GetValueOrDefault(q.Choices[i])).ThenBy(i => i).First() == q.Answer) byOptions++;
        }
        return (100.0 * Math.Max(byText, Math.Max(byPosition, byOptions)) / test.Count, 100.0 * test.Average(q => 1.0 / q.Choices.Count));
    }
}
