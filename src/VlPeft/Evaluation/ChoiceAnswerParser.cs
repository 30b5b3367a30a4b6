using System.Text.RegularExpressions;

namespace VlPeft.Evaluation;

/// <summary>
/// Maps generated text back to a choice for the InstructBLIP-style "(x) choice" targets: a leading
/// "(x)" letter wins; otherwise the one choice whose text the answer equals (case-insensitive) or,
/// failing that, the longest choice the answer contains. −1 when nothing matches (counted wrong).
/// </summary>
public static class ChoiceAnswerParser
{
    static readonly Regex Letter = new(@"^\s*\(([a-e])\)", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase);

    public static int Parse(string generated, IReadOnlyList<string> choices)
    {
        var m = Letter.Match(generated);
        if (m.Success)
        {
            int index = char.ToLowerInvariant(m.Groups[1].Value[0]) - 'a';
            return index < choices.Count ? index : -1;
        }
        string text = generated.Trim();
        for (int i = 0; i < choices.Count; i++)
            if (string.Equals(text, choices[i], StringComparison.OrdinalIgnoreCase)) return i;
        return Enumerable.Range(0, choices.Count)
            .Where(i => text.Contains(choices[i], StringComparison.OrdinalIgnoreCase))
            .OrderByDescending(i => choices[i].Length).DefaultIfEmpty(-1).First();
    }
}
