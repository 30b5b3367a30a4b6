using System.Text;
using System.Text.RegularExpressions;

namespace VlPeft.Evaluation.Metrics;

/// <summary>
/// A re-implementation of what pycocoevalcap's PTB tokenization (Stanford PTBTokenizer,
/// -preserveLines -lowerCase, then removal of punctuation tokens) produces on captions: clitics
/// split (<c>it 's</c>, <c>do n't</c>), punctuation split off and then dropped, quotes and brackets
/// dropped, <c>/</c> and <c>*</c> escaped, lowercased, common British spellings Americanized.
/// Exact on ordinary captions; unusual text (URLs, emoticons, abbreviations) may differ from Java.
/// </summary>
public static class PtbTokenizer
{
    // The 17 tokens pycocoevalcap removes after tokenization.
    static readonly HashSet<string> Removed = new()
    {
        "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";",
    };

    static readonly Regex Token = new(
        @"\d+(?:[.,]\d+)+" +                         // numbers like 1,000 and 3.5 stay whole
        @"|[\p{L}\p{N}]+(?:[-/&*][\p{L}\p{N}]+)*(?=n't\b)" + // the stem before n't
        @"|n't\b" +
        @"|'(?:s|ll|re|ve|m|d)\b" +                   // clitics split from their word
        @"|(?:[A-Za-z]\.){2,}" +                      // acronyms keep their periods
        @"|[\p{L}\p{N}]+(?:[-/&*][\p{L}\p{N}]+)*" +    // words, hyphenated words, 1/2
        @"|\.\.\.|--|[^\s\p{L}\p{N}]",
        RegexOptions.CultureInvariant | RegexOptions.IgnoreCase);

    public static string Tokenize(string caption)
    {
        var tokens = new List<string>();
        string text = caption.Replace('\n', ' ');
        foreach (Match m in Token.Matches(text))
        {
            string token = m.Value;
            // Bracket and quote tokens keep their PTB escapes in upper case (-lowerCase lowercases words only).
            token = token switch
            {
                "(" => "-LRB-", ")" => "-RRB-", "{" => "-LCB-", "}" => "-RCB-", "[" => "-LSB-", "]" => "-RSB-",
                "\"" => "''", "…" => "...",
                _ => Americanize.Apply(token).ToLowerInvariant().Replace("/", "\\/").Replace("*", "\\*"),
            };
            if (!Removed.Contains(token)) tokens.Add(token);
        }
        return string.Join(' ', tokens);
    }
}

/// <summary>CoreNLP's Americanize (British → American spelling), applied before lowercasing as in 3.x.</summary>
static class Americanize
{
    static readonly Dictionary<string, string> Words = new()
    {
        ["grey"] = "gray", ["greys"] = "grays", ["centre"] = "center", ["centres"] = "centers", ["theatre"] = "theater",
        ["theatres"] = "theaters", ["metre"] = "meter", ["metres"] = "meters", ["litre"] = "liter", ["litres"] = "liters",
        ["travelled"] = "traveled", ["travelling"] = "traveling", ["traveller"] = "traveler", ["travellers"] = "travelers",
        ["favourite"] = "favorite", ["favourites"] = "favorites", ["neighbourhood"] = "neighborhood", ["neighbourhoods"] = "neighborhoods",
        ["realise"] = "realize", ["realised"] = "realized", ["kerb"] = "curb", ["kerbs"] = "curbs", ["learnt"] = "learned",
        ["tyre"] = "tire", ["tyres"] = "tires", ["aeroplane"] = "airplane", ["aeroplanes"] = "airplanes", ["jewellery"] = "jewelry",
        ["pyjamas"] = "pajamas", ["organise"] = "organize", ["organised"] = "organized", ["apologise"] = "apologize",
        ["catalogue"] = "catalog", ["cheque"] = "check", ["defence"] = "defense", ["licence"] = "license", ["offence"] = "offense",
        ["plough"] = "plow", ["moustache"] = "mustache", ["cosy"] = "cozy", ["draught"] = "draft", ["storey"] = "story",
    };

    static readonly HashSet<string> OurExceptions = new() { "contour", "contours", "detour", "detours", "devour", "devours", "downpour", "downpours", "glamour", "paramour", "velour", "troubadour", "troubadours", "amour" };
    static readonly Regex Our = new(@"^([a-z]{3,})our(s?)$", RegexOptions.CultureInvariant);

    public static string Apply(string token)
    {
        if (token.Length < 4) return token;
        if (Words.TryGetValue(token, out var american)) return american;
        if (token.Length >= 6 && !OurExceptions.Contains(token))
        {
            var m = Our.Match(token);
            if (m.Success) return m.Groups[1].Value + "or" + m.Groups[2].Value;
            if (token.StartsWith("programme")) return "program" + token["programme".Length..];
        }
        return token;
    }
}
