namespace VlPeft.Data.Synthetic;

/// <summary>
/// A text-only baseline that sees everything but the image: for each test question it picks the
/// option text most often correct for the same question text in training (falling back to the
/// option most often correct overall, then the first option). If the image matters, it stays near
/// chance.
/// </summary>
public static class BlindBaseline
{
    public static (double Accuracy, double Chance) Evaluate(IReadOnlyList<SyntheticQuestion> train, IReadOnlyList<SyntheticQuestion> test)
    {
        var byQuestion = train.GroupBy(q => q.Question + "\u0001" + q.Hint)
            .ToDictionary(g => g.Key, g => g.GroupBy(q => q.Choices[q.Answer]).ToDictionary(a => a.Key, a => a.Count()));
        var overall = train.GroupBy(q => q.Choices[q.Answer]).ToDictionary(g => g.Key, g => g.Count());
        int correct = 0;
        foreach (var q in test)
        {
            var votes = byQuestion.GetValueOrDefault(q.Question + "\u0001" + q.Hint) ?? new Dictionary<string, int>();
            int best = Enumerable.Range(0, q.Choices.Count)
                .OrderByDescending(i => votes.GetValueOrDefault(q.Choices[i]))
                .ThenByDescending(i => overall.GetValueOrDefault(q.Choices[i]))
                .ThenBy(i => i).First();
            if (best == q.Answer) correct++;
        }
        return (100.0 * correct / test.Count, 100.0 * test.Average(q => 1.0 / q.Choices.Count));
    }
}
