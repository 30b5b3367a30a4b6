using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace VlPeft.Text.Tokenizers;

/// <summary>
/// A Hugging Face tokenizer directory read through Microsoft.ML.Tokenizers, chosen from its files:
/// <c>vocab.txt</c> (BERT WordPiece, e.g. the Q-Former's with the added [DEC]), <c>tokenizer.model</c>
/// (LLaMA SentencePiece BPE), <c>spiece.model</c> (T5 SentencePiece Unigram), <c>vocab.json</c> +
/// <c>merges.txt</c> (GPT-2 / RoBERTa byte-level BPE). Special tokens, padding side and truncation
/// side come from <c>tokenizer_config.json</c> / <c>special_tokens_map.json</c> / <c>added_tokens.json</c>.
/// </summary>
public sealed class TextTokenizer
{
    readonly Tokenizer inner;
    readonly Func<string, IReadOnlyList<int>> encodeBare;
    readonly int[] prefix, suffix;
    readonly Dictionary<string, int> added;

    TextTokenizer(string kind, Tokenizer inner, Func<string, IReadOnlyList<int>> encodeBare, int[] prefix, int[] suffix,
        int? padId, int? bosId, int? eosId, Dictionary<string, int> added, string paddingSide, string truncationSide)
    {
        Kind = kind;
        this.inner = inner;
        this.encodeBare = encodeBare;
        this.prefix = prefix;
        this.suffix = suffix;
        PadId = padId;
        BosId = bosId;
        EosId = eosId;
        this.added = added;
        PaddingSide = paddingSide;
        TruncationSide = truncationSide;
    }

    /// <summary>bert, llama, t5, gpt2 or roberta.</summary>
    public string Kind { get; }
    public int? PadId { get; }
    public int? BosId { get; }
    public int? EosId { get; }
    public string PaddingSide { get; }
    public string TruncationSide { get; }
    public Tokenizer Inner => inner;

    /// <summary>The special tokens <see cref="Encode(string, bool)"/> puts before a text (LLaMA: BOS; BERT: [CLS]).</summary>
    public IReadOnlyList<int> Prefix => prefix;

    /// <summary>Ids of added tokens such as the Q-Former's "[DEC]".</summary>
    public int? AddedTokenId(string token) => added.TryGetValue(token, out int id) ? id : null;

    /// <summary>Token ids with the model's special tokens ([CLS] … [SEP]; &lt;s&gt; …; … &lt;/s&gt;).</summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true) =>
        addSpecialTokens ? prefix.Concat(encodeBare(text)).Concat(suffix).ToList() : encodeBare(text);

    /// <summary>
    /// Encodes and truncates to <paramref name="maxTokens"/> from the configured side (HF: the text is cut,
    /// the special tokens are kept).
    /// </summary>
    public IReadOnlyList<int> Encode(string text, int maxTokens, bool addSpecialTokens = true)
    {
        var ids = encodeBare(text);
        int room = maxTokens - (addSpecialTokens ? prefix.Length + suffix.Length : 0);
        if (room < 0) throw new ArgumentException($"max length {maxTokens} leaves no room for the special tokens");
        if (ids.Count > room) ids = TruncationSide == "left" ? ids.Skip(ids.Count - room).ToList() : ids.Take(room).ToList();
        return addSpecialTokens ? prefix.Concat(ids).Concat(suffix).ToList() : ids;
    }

    public string Decode(IEnumerable<int> ids) => inner.Decode(ids) ?? "";

    public static TextTokenizer FromDirectory(string directory)
    {
        if (!Directory.Exists(directory)) throw new BadInputException("tokenizer directory not found", directory);
        string P(string name) => Path.Combine(directory, name);
        var config = ReadObject(P("tokenizer_config.json"));
        var added = ReadAdded(P("added_tokens.json"));
        string padding = StringField(config, "padding_side") ?? "right";
        string truncation = StringField(config, "truncation_side") ?? "right";
        try
        {
            if (File.Exists(P("vocab.txt"))) return Bert(P("vocab.txt"), config, added, padding, truncation);
            if (File.Exists(P("tokenizer.model"))) return Llama(P("tokenizer.model"), added, padding, truncation);
            if (File.Exists(P("spiece.model"))) return T5(P("spiece.model"), added, padding, truncation);
            if (File.Exists(P("vocab.json")) && File.Exists(P("merges.txt"))) return ByteLevel(P("vocab.json"), P("merges.txt"), config, added, padding, truncation);
        }
        catch (Exception e) when (e is not BadInputException && e is not OutOfMemoryException)
        {
            throw new BadInputException($"tokenizer files cannot be read: {e.Message}", directory);
        }
        throw new BadInputException(File.Exists(P("tokenizer.json"))
            ? "only tokenizer.json found; VlPeft needs the slow-tokenizer files (vocab.txt, tokenizer.model, spiece.model or vocab.json + merges.txt)"
            : "no tokenizer files (vocab.txt, tokenizer.model, spiece.model, or vocab.json + merges.txt)", directory);
    }

    static TextTokenizer Bert(string vocab, JsonElement? config, Dictionary<string, int> added, string padding, string truncation)
    {
        bool lower = config is { } c && c.TryGetProperty("do_lower_case", out var l) ? l.GetBoolean() : true;
        var bert = BertTokenizer.Create(vocab, new BertOptions { LowerCaseBeforeTokenization = lower });
        return new TextTokenizer("bert", bert, t => bert.EncodeToIds(t, addSpecialTokens: false), new[] { bert.ClassificationTokenId },
            new[] { bert.SeparatorTokenId }, bert.PaddingTokenId, added.TryGetValue("[DEC]", out int dec) ? dec : null,
            bert.SeparatorTokenId, added, padding, truncation); // [SEP] ends sequences, so it serves as EOS for LMs using this vocabulary
    }

    static TextTokenizer Llama(string model, Dictionary<string, int> added, string padding, string truncation)
    {
        using var stream = File.OpenRead(model);
        var llama = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false, specialTokens: added.Count > 0 ? added : null);
        int? pad = added.TryGetValue("[PAD]", out int p) ? p : added.TryGetValue("<pad>", out p) ? p : null;
        return new TextTokenizer("llama", llama, t => llama.EncodeToIds(t, false, false), new[] { llama.BeginningOfSentenceId }, Array.Empty<int>(),
            pad, llama.BeginningOfSentenceId, llama.EndOfSentenceId, added, padding, truncation);
    }

    static TextTokenizer T5(string model, Dictionary<string, int> added, string padding, string truncation)
    {
        var bytes = File.ReadAllBytes(model);
        // T5 has no BOS (bos_id = −1), which Microsoft.ML.Tokenizers cannot load: point it at pad (0).
        if (SentencePieceModelFile.BosId(bytes) is int bos && bos < 0) bytes = SentencePieceModelFile.WithBosId(bytes, 0);
        var sp = SentencePieceTokenizer.Create(new MemoryStream(bytes), addBeginningOfSentence: false, addEndOfSentence: false, specialTokens: added.Count > 0 ? added : null);
        return new TextTokenizer("t5", sp, t => sp.EncodeToIds(t, false, false), Array.Empty<int>(), new[] { sp.EndOfSentenceId },
            0, null, sp.EndOfSentenceId, added, padding, truncation);
    }

    static TextTokenizer ByteLevel(string vocab, string merges, JsonElement? config, Dictionary<string, int> added, string padding, string truncation)
    {
        bool roberta = StringField(config, "tokenizer_class")?.Contains("Roberta", StringComparison.OrdinalIgnoreCase) == true;
        using var v = File.OpenRead(vocab);
        using var m = File.OpenRead(merges);
        var bpe = CodeGenTokenizer.Create(v, m, addPrefixSpace: false, addBeginOfSentence: false, addEndOfSentence: false);
        IReadOnlyList<int> Bare(string t) => bpe.EncodeToIds(t, false, false);
        if (!roberta)
            return new TextTokenizer("gpt2", bpe, Bare, Array.Empty<int>(), Array.Empty<int>(), null, bpe.BeginningOfSentenceId, bpe.EndOfSentenceId, added, padding, truncation);
        // RoBERTa wraps sequences in <s> … </s> and pads with <pad>, all ordinary vocab.json entries.
        using var doc = JsonDocument.Parse(File.ReadAllText(vocab));
        int Id(string token) => doc.RootElement.TryGetProperty(token, out var id) ? id.GetInt32() : throw new BadInputException($"RoBERTa vocabulary lacks {token}", vocab);
        int bos = Id("<s>"), eos = Id("</s>");
        return new TextTokenizer("roberta", bpe, Bare, new[] { bos }, new[] { eos }, Id("<pad>"), bos, eos, added, padding, truncation);
    }

    static JsonElement? ReadObject(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return doc.RootElement.ValueKind == JsonValueKind.Object ? doc.RootElement.Clone() : throw new BadInputException("expected a JSON object", path);
        }
        catch (JsonException e)
        {
            throw new BadInputException($"not valid JSON: {e.Message}", path);
        }
    }

    static Dictionary<string, int> ReadAdded(string path)
    {
        var result = new Dictionary<string, int>();
        if (ReadObject(path) is { } obj)
            foreach (var p in obj.EnumerateObject())
                result[p.Name] = p.Value.TryGetInt32(out int id) ? id : throw new BadInputException($"added token '{p.Name}' has no integer id", path);
        return result;
    }

    static string? StringField(JsonElement? obj, string name) =>
        obj is { } o && o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
