using System.Text.RegularExpressions;

namespace VlPeft.Text.Tokenizers;

/// <summary>
/// Builds a BERT-style WordPiece vocabulary (vocab.txt) from a corpus: the special tokens, every
/// lowercased word and punctuation mark seen, and single characters with their "##" forms so any
/// text over the same alphabet still tokenizes. Used for the project's own tiny models.
/// </summary>
public static class WordPieceVocabulary
{
    public static readonly string[] Specials = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
    static readonly Regex Words = new(@"[a-z0-9]+|[^\sa-z0-9]", RegexOptions.CultureInvariant);

    public static IReadOnlyList<string> Build(IEnumerable<string> corpus)
    {
        var counts = new Dictionary<string, int>();
        foreach (var text in corpus)
            foreach (Match m in Words.Matches(text.ToLowerInvariant()))
                counts[m.Value] = counts.GetValueOrDefault(m.Value) + 1;
        var characters = "abcdefghijklmnopqrstuvwxyz0123456789".Select(c => c.ToString()).ToList();
        var vocab = new List<string>(Specials);
        vocab.AddRange(characters);
        vocab.AddRange(characters.Select(c => "##" + c));
        vocab.AddRange(counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key).Where(w => !vocab.Contains(w)));
        return vocab;
    }

    public static void Write(string path, IReadOnlyList<string> vocabulary) => File.WriteAllLines(path, vocabulary);
}
