using System.Text;
using System.Text.RegularExpressions;
using VlPeft.Data;

namespace VlPeft.Text;

/// <summary>An instruction, the training target, and the candidate answers ranked at evaluation.</summary>
public sealed record PromptExample(string Instruction, string Target, IReadOnlyList<string> Candidates);

/// <summary>
/// The prompts of the InstructBLIP PEFT paper's code (AttentionX/InstructBLIP_PEFT; datasets-and-metrics.md
/// §1.7(d), §2.4, §4.3, §5.3), including the <c>instruct_blip_question</c> text processor.
/// </summary>
public static class InstructBlipPeftPrompts
{
    const string Letters = "abcde";
    static readonly Regex Removed = new("[!*#;]", RegexOptions.CultureInvariant);

    /// <summary>
    /// instruct_blip_question: delete every ! * # ;, strip trailing spaces, keep at most
    /// <paramref name="maxWords"/> space-separated words. No lowercasing.
    /// </summary>
    public static string ProcessQuestion(string text, int maxWords = 1000)
    {
        string cleaned = Removed.Replace(text, "").TrimEnd(' ');
        var words = cleaned.Split(' ');
        return words.Length > maxWords ? string.Join(' ', words[..maxWords]) : cleaned;
    }

    /// <summary>
    /// ScienceQA: <c>Context: {hint lecture} Question: {question} Options: {(a) c0\n(b) c1\n} Answer:</c> with
    /// literal braces; the context is hint + " " + lecture (so a leading space when the hint is empty).
    /// Target and candidates: <c>(x) choice</c>.
    /// </summary>
    public static PromptExample ScienceQa(ChoiceRecord r)
    {
        var options = new StringBuilder();
        for (int i = 0; i < r.Choices.Count; i++) options.Append('(').Append(Letters[i]).Append(") ").Append(r.Choices[i]).Append('\n');
        string context = r.Hint + " " + r.Lecture;
        string instruction = "Context: {" + context + "} Question: {" + r.Question + "} Options: {" + options + "} Answer:";
        return new PromptExample(ProcessQuestion(instruction), Candidate(r, r.Answer), Candidates(r));
    }

    /// <summary>IconQA: <c>&lt;Image&gt; Question: q Options: (a) c0 (b) c1. Short answer:</c>.</summary>
    public static PromptExample IconQa(ChoiceRecord r)
    {
        string options = string.Join(' ', Enumerable.Range(0, r.Choices.Count).Select(i => $"({Letters[i]}) {r.Choices[i]}"));
        string instruction = "<Image> Question: " + r.Question + " Options: " + options + ". Short answer:";
        return new PromptExample(ProcessQuestion(instruction), Candidate(r, r.Answer), Candidates(r));
    }

    /// <summary>VizWiz training instruction (the paper's eval feeds the bare processed question instead).</summary>
    public static string VizWiz(string question) => ProcessQuestion("<Image> Question: " + question + " Short answer:");

    /// <summary>Flickr30k captioning instruction.</summary>
    public const string Flickr30k = "<Image> A short image description:";

    static string Candidate(ChoiceRecord r, int i) => $"({Letters[i]}) {r.Choices[i]}";
    static IReadOnlyList<string> Candidates(ChoiceRecord r) => Enumerable.Range(0, r.Choices.Count).Select(i => Candidate(r, i)).ToList();
}
