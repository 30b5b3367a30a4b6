using System.Text.RegularExpressions;

namespace VlPeft.Evaluation.Metrics;

/// <summary>How generated ScienceQA text becomes a choice index (datasets-and-metrics.md §1.5).</summary>
public enum ScienceQaAnswerRule
{
    /// <summary>Official GPT-3 runner: exactly one match of <c>The answer is ([A-Z]).</c>, else a random valid index (seeded).</summary>
    Official,
    /// <summary>LaVIN: the first match, else a random valid index (seeded).</summary>
    Lavin,
    /// <summary>LLaVA: a bare letter, or "X. …", or exactly one regex match; else −1 (always wrong).</summary>
    Llava,
}

/// <summary>Extracts the predicted choice index from generated text under one of the published rules.</summary>
public sealed class ScienceQaAnswerParser
{
    // The '.' after the group is unescaped in the original and matches any character; kept on purpose.
    static readonly Regex AnswerPattern = new("The answer is ([A-Z]).", RegexOptions.CultureInvariant);
    const string Letters = "ABCDE";

    readonly ScienceQaAnswerRule rule;
    readonly Random random;

    public ScienceQaAnswerParser(ScienceQaAnswerRule rule, int seed = 0)
    {
        this.rule = rule;
        random = new Random(seed);
    }

    public int Parse(string text, int choiceCount)
    {
        string options = Letters[..Math.Min(choiceCount, Letters.Length)];
        int Index(string? letter) => letter is { Length: 1 } && options.Contains(letter[0]) ? options.IndexOf(letter[0]) : -1;
        var matches = AnswerPattern.Matches(text);
        switch (rule)
        {
            case ScienceQaAnswerRule.Official:
            {
                int index = matches.Count == 1 ? Index(matches[0].Groups[1].Value) : -1;
                return index >= 0 ? index : random.Next(choiceCount);
            }
            case ScienceQaAnswerRule.Lavin:
            {
                int index = matches.Count > 0 ? Index(matches[0].Groups[1].Value) : -1;
                return index >= 0 ? index : random.Next(choiceCount);
            }
            default:
                if (Letters.Contains(text) && text.Length == 1) return Index(text);
                if (text.Length >= 3 && Letters.Contains(text[0]) && text.Substring(1, 2) == ". ") return Index(text[..1]);
                return matches.Count == 1 ? Index(matches[0].Groups[1].Value) : -1;
        }
    }
}
