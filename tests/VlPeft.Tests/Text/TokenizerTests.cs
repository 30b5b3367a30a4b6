using VlPeft.Text.Tokenizers;

namespace VlPeft.Tests.Text;

public class TokenizerTests
{
    [Fact]
    public void Bert_wordpiece_with_added_dec_and_left_truncation()
    {
        using var dir = new TempDirectory();
        File.WriteAllLines(dir.File("vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "," });
        File.WriteAllText(dir.File("added_tokens.json"), "{\"[DEC]\": 9}");
        File.WriteAllText(dir.File("tokenizer_config.json"), "{\"do_lower_case\": true, \"truncation_side\": \"left\", \"bos_token\": \"[DEC]\"}");
        var t = TextTokenizer.FromDirectory(dir.Path);
        Assert.Equal("bert", t.Kind);
        Assert.Equal(new[] { 2, 5, 6, 7, 8, 3 }, t.Encode("Hello worlds,"));
        Assert.Equal(new[] { 5, 6, 7 }, t.Encode("hello worlds", addSpecialTokens: false));
        Assert.Equal(new[] { 2, 6, 7, 3 }, t.Encode("hello worlds", maxTokens: 4));   // the left end is cut, [CLS]/[SEP] kept
        Assert.Equal(9, t.AddedTokenId("[DEC]"));
        Assert.Equal(0, t.PadId);
        Assert.Equal("left", t.TruncationSide);
    }

    [Fact]
    public void T5_unigram_model_with_bos_minus_one_loads_and_appends_eos()
    {
        using var dir = new TempDirectory();
        var pieces = new (string, float, int)[]
        {
            ("<pad>", 0, SentencePieceFixture.Control), ("</s>", 0, SentencePieceFixture.Control), ("<unk>", 0, SentencePieceFixture.Unknown),
            ("▁hello", -1, SentencePieceFixture.Normal), ("▁world", -1, SentencePieceFixture.Normal), ("▁", -3, SentencePieceFixture.Normal),
            ("h", -5, 1), ("e", -5, 1), ("l", -5, 1), ("o", -5, 1), ("w", -5, 1), ("r", -5, 1), ("d", -5, 1),
        };
        byte[] model = SentencePieceFixture.Model(pieces, modelType: 1, unk: 2, bos: -1, eos: 1, pad: 0);
        Assert.Equal(-1, SentencePieceModelFile.BosId(model));
        Assert.Equal(0, SentencePieceModelFile.BosId(SentencePieceModelFile.WithBosId(model, 0)));
        File.WriteAllBytes(dir.File("spiece.model"), model);
        var t = TextTokenizer.FromDirectory(dir.Path);
        Assert.Equal("t5", t.Kind);
        Assert.Equal(new[] { 3, 4, 1 }, t.Encode("hello world"));
        Assert.Equal(1, t.EosId);
        Assert.Equal(0, t.PadId);
    }

    [Fact]
    public void Llama_sentencepiece_bpe_prepends_bos_and_merges()
    {
        using var dir = new TempDirectory();
        var pieces = new (string, float, int)[]
        {
            ("<unk>", 0, SentencePieceFixture.Unknown), ("<s>", 0, SentencePieceFixture.Control), ("</s>", 0, SentencePieceFixture.Control),
            ("▁", -1, 1), ("h", -2, 1), ("e", -2, 1), ("l", -2, 1), ("o", -2, 1), ("ll", -1.5f, 1),
        };
        File.WriteAllBytes(dir.File("tokenizer.model"), SentencePieceFixture.Model(pieces, modelType: 2, unk: 0, bos: 1, eos: 2, pad: -1));
        File.WriteAllText(dir.File("added_tokens.json"), "{\"[PAD]\": 9}");
        var t = TextTokenizer.FromDirectory(dir.Path);
        Assert.Equal("llama", t.Kind);
        // "hello" → "▁hello" → ▁ h e l l o, then the l+l merge.
        Assert.Equal(new[] { 1, 3, 4, 5, 8, 7 }, t.Encode("hello"));
        Assert.Equal(9, t.PadId);
    }

    [Fact]
    public void Gpt2_byte_level_bpe_and_roberta_wrapping()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("vocab.json"), "{\"<s>\":0,\"<pad>\":1,\"</s>\":2,\"h\":3,\"e\":4,\"l\":5,\"o\":6,\"\u0120\":7,\"w\":8,\"r\":9,\"d\":10,\"he\":11,\"ll\":12,\"llo\":13,\"hello\":14,\"\u0120w\":15,\"<|endoftext|>\":16}");
        File.WriteAllText(dir.File("merges.txt"), "#version: 0.2\nh e\nl l\nll o\nhe llo\n\u0120 w\n");
        var gpt2 = TextTokenizer.FromDirectory(dir.Path);
        Assert.Equal("gpt2", gpt2.Kind);
        Assert.Equal(new[] { 14, 15, 6, 9, 5, 10 }, gpt2.Encode("hello world"));
        Assert.Equal("hello world", gpt2.Decode(new[] { 14, 15, 6, 9, 5, 10 }));
        File.WriteAllText(dir.File("tokenizer_config.json"), "{\"tokenizer_class\": \"RobertaTokenizer\"}");
        var roberta = TextTokenizer.FromDirectory(dir.Path);
        Assert.Equal(new[] { 0, 14, 2 }, roberta.Encode("hello"));
        Assert.Equal(1, roberta.PadId);
    }

    [Fact]
    public void Missing_or_unusable_tokenizer_files_are_named()
    {
        using var dir = new TempDirectory();
        Assert.Contains("no tokenizer files", Assert.Throws<BadInputException>(() => TextTokenizer.FromDirectory(dir.Path)).Message);
        File.WriteAllText(dir.File("tokenizer.json"), "{}");
        Assert.Contains("only tokenizer.json", Assert.Throws<BadInputException>(() => TextTokenizer.FromDirectory(dir.Path)).Message);
        File.WriteAllBytes(dir.File("spiece.model"), new byte[] { 1, 2, 3 });
        Assert.Equal(dir.Path, Assert.Throws<BadInputException>(() => TextTokenizer.FromDirectory(dir.Path)).File);
    }
}
