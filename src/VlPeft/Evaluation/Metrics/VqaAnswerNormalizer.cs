using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace VlPeft.Evaluation.Metrics;

/// <summary>
/// The official VQA answer normalization (vqaEval.py processPunctuation + processDigitArticle), with
/// its tables loaded as data: the "vqa" tables (ASCII contractions) or the "vizwiz" ones (U+2019).
/// Quirks kept: the digit-comma-digit test deletes every listed punctuation mark; the period rule is
/// effectively <c>\.(?!\d)</c> and applied at most 32 times.
/// </summary>
public sealed class VqaAnswerNormalizer
{
    readonly IReadOnlyList<string> punctuation;
    readonly IReadOnlyDictionary<string, string> contractions, manualMap;
    readonly HashSet<string> articles;
    static readonly Regex CommaStrip = new(@"(\d)(,)(\d)", RegexOptions.CultureInvariant);
    static readonly Regex PeriodStrip = new(@"(?!<=\d)(\.)(?!\d)", RegexOptions.CultureInvariant);

    VqaAnswerNormalizer(JsonElement tables)
    {
        punctuation = tables.GetProperty("punct").EnumerateArray().Select(p => p.GetString()!).ToList();
        contractions = tables.GetProperty("contractions").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        manualMap = tables.GetProperty("manualMap").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        articles = tables.GetProperty("articles").EnumerateArray().Select(p => p.GetString()!).ToHashSet();
    }

    public static VqaAnswerNormalizer Vqa { get; } = Load("vqa");
    public static VqaAnswerNormalizer VizWiz { get; } = Load("vizwiz");

    static VqaAnswerNormalizer Load(string which)
    {
        using var stream = typeof(VqaAnswerNormalizer).Assembly.GetManifestResourceStream("VlPeft.VqaNormalizationTables.json")!;
        using var doc = JsonDocument.Parse(stream);
        return new VqaAnswerNormalizer(doc.RootElement.GetProperty(which).Clone());
    }

    /// <summary>\n and \t → space, then strip (always applied first).</summary>
    public static string CleanWhitespace(string text) => text.Replace('\n', ' ').Replace('\t', ' ').Trim(' ');

    public string Normalize(string text) => DigitArticle(Punctuation(text));

    public string Punctuation(string text)
    {
        string output = text;
        bool hasDigitComma = CommaStrip.IsMatch(text);
        foreach (var p in punctuation)
        {
            // The tests look at the original text; the edits apply to the working copy.
            if (text.Contains(p + " ") || text.Contains(" " + p) || hasDigitComma) output = output.Replace(p, "");
            else output = output.Replace(p, " ");
        }
        // re.sub(pattern, "", s, re.UNICODE): the flag lands in `count`, so at most 32 replacements.
        return PeriodStrip.Replace(output, "", 32);
    }

    public string DigitArticle(string text)
    {
        var words = new List<string>();
        foreach (var raw in text.ToLowerInvariant().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
        {
            string word = manualMap.TryGetValue(raw, out var mapped) ? mapped : raw;
            if (!articles.Contains(word)) words.Add(word);
        }
        for (int i = 0; i < words.Count; i++)
            if (contractions.TryGetValue(words[i], out var full)) words[i] = full;
        return string.Join(' ', words);
    }
}
