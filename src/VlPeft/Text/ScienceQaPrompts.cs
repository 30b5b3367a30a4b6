using VlPeft.Data;

namespace VlPeft.Text;

/// <summary>
/// The other ScienceQA prompt families (datasets-and-metrics.md §1.7): LaVIN's QCM-ALE (from the
/// official base_prompt.py) and LLaVA-1.5's zero-shot CQM-A.
/// </summary>
public static class ScienceQaPrompts
{
    const string Letters = "ABCDE";

    /// <summary>
    /// LaVIN: prompt <c>Question: q\nContext: ctx\nOptions: (A) c0 (B) c1\nResponse:</c>; target
    /// <c>The answer is X. BECAUSE: lecture solution</c> with the explanations' newlines escaped as
    /// \n; one pass of "  " → " ", then strip; a trailing "BECAUSE:" is dropped. ctx = hint or "N/A".
    /// </summary>
    public static (string Prompt, string Target) LavinQcmAle(ChoiceRecord r)
    {
        string context = r.Hint.Trim().Length == 0 ? "N/A" : r.Hint.Trim();
        string options = string.Join(' ', Enumerable.Range(0, r.Choices.Count).Select(i => $"({Letters[i]}) {r.Choices[i]}"));
        string prompt = Clean($"Question: {r.Question}\nContext: {context}\nOptions: {options}\nResponse:");
        string target = Clean($"The answer is {Letters[r.Answer]}. BECAUSE: {r.Lecture.Replace("\n", "\\n")} {r.Solution.Replace("\n", "\\n")}");
        if (target.EndsWith("BECAUSE:", StringComparison.Ordinal)) target = target[..^"BECAUSE:".Length].Trim();
        return (prompt, target);
    }

    /// <summary>
    /// LaVIN's QCM-ALE as a training/ranking example: the prompt, the explained target, and one candidate per
    /// option ("The answer is X.", what the answer rules read) for ranking.
    /// </summary>
    public static PromptExample Lavin(ChoiceRecord r)
    {
        var (prompt, target) = LavinQcmAle(r);
        return new PromptExample(prompt, target, Enumerable.Range(0, r.Choices.Count).Select(i => $"The answer is {Letters[i]}.").ToList());
    }

    /// <summary>
    /// LLaVA-1.5 zero-shot (llava_test_CQM-A.json): <c>&lt;image&gt;\n</c> if there is an image,
    /// <c>Context: hint\n</c> if the hint is non-empty, then <c>q\nA. c0\nB. c1</c>; one pass of "  " → " ".
    /// The answer is the bare letter.
    /// </summary>
    public static (string Prompt, string Answer) LlavaCqmA(ChoiceRecord r)
    {
        string prompt = (r.HasImage ? "<image>\n" : "") + (r.Hint.Length > 0 ? $"Context: {r.Hint}\n" : "")
            + r.Question + "\n" + string.Join('\n', Enumerable.Range(0, r.Choices.Count).Select(i => $"{Letters[i]}. {r.Choices[i]}"));
        return (prompt.Replace("  ", " "), Letters[r.Answer].ToString());
    }

    /// <summary>The instruction LLaVA's eval script appends to the zero-shot prompt.</summary>
    public const string LlavaAnswerInstruction = "\nAnswer with the option's letter from the given choices directly.";

    static string Clean(string text) => text.Replace("  ", " ").Trim();
}
