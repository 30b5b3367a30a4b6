namespace VlPeft.Data.Synthetic;

/// <summary>
/// Turns an open synthetic question into a multiple-choice one, for instruction-style pretraining in
/// the fine-tuning tasks' answer format: distractors are drawn from the answer's own kind (a count →
/// neighbouring counts, yes/no → the other, "a red circle" → other colour–shape pairs), and the correct
/// option lands at a uniformly random position. Answers that are a single colour or shape word stay
/// open-ended, so those question families reach multiple-choice form only in fine-tuning.
/// </summary>
public static class OpenAnswerChoices
{
    /// <summary>The options and the correct one's index, or null when the answer stays open-ended.</summary>
    public static (IReadOnlyList<string> Choices, int Answer)? For(string answer, Random random)
    {
        List<string> distractors;
        if (int.TryParse(answer, out int n) && n >= 1)
        {
            // Three consecutive counts around n (the image fixes n, so the window follows it).
            int start = Math.Max(1, n - random.Next(3));
            distractors = Enumerable.Range(start, 3).Where(v => v != n).Select(v => v.ToString()).ToList();
        }
        else if (answer is "yes" or "no")
            distractors = new List<string> { answer == "yes" ? "no" : "yes" };
        else if (answer.Split(' ') is ["a", var color, var kind] && Scene.Colors.Contains(color) && Scene.Kinds.Contains(kind))
            distractors = Scene.Colors.SelectMany(c => Scene.Kinds.Select(k => $"a {c} {k}")).Where(o => o != answer)
                .OrderBy(_ => random.Next()).Take(2).ToList();
        else
            return null;
        int position = random.Next(distractors.Count + 1);
        distractors.Insert(position, answer);
        return (distractors, position);
    }
}
