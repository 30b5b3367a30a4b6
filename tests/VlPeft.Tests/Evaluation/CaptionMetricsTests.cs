using VlPeft.Evaluation.Metrics;

namespace VlPeft.Tests.Evaluation;

public class CaptionMetricsTests
{
    static Dictionary<string, string> H(params (string Id, string Text)[] items) => items.ToDictionary(i => i.Id, i => i.Text);
    static Dictionary<string, IReadOnlyList<string>> R(params (string Id, string[] Refs)[] items) => items.ToDictionary(i => i.Id, i => (IReadOnlyList<string>)i.Refs);

    [Fact]
    public void Bleu_pools_statistics_and_applies_the_brevity_penalty()
    {
        // Hypothesis 3 words, closest reference 5 words: clipped matches 3/3, 2/2, 1/1, 0/0.
        var bleu = CaptionMetrics.Bleu(H(("1", "a b c")), R(("1", new[] { "a b c d e" })));
        double tiny = 1e-15, small = 1e-9;
        double p1 = (3 + tiny) / (3 + small), p2 = (2 + tiny) / (2 + small), p3 = (1 + tiny) / (1 + small), p4 = tiny / small;
        double bp = Math.Exp(1 - 1 / ((3 + tiny) / (5 + small)));
        Assert.Equal(p1 * bp, bleu[0], 12);
        Assert.Equal(Math.Sqrt(p1 * p2) * bp, bleu[1], 12);
        Assert.Equal(Math.Pow(p1 * p2 * p3 * p4, 0.25) * bp, bleu[3], 12);
    }

    [Fact]
    public void Bleu_closest_reference_ties_go_to_the_shorter_one()
    {
        // Lengths 2 and 4 are equally close to 3; the shorter (2) is used, so no brevity penalty.
        var bleu = CaptionMetrics.Bleu(H(("1", "a b c")), R(("1", new[] { "a b", "a b c x" })));
        Assert.Equal((3 + 1e-15) / (3 + 1e-9), bleu[0], 12);
    }

    [Fact]
    public void Rouge_l_takes_precision_and_recall_maxima_independently()
    {
        // ref1: LCS 2 → P = 2/4, R = 2/6; ref2: LCS 4 → P = 1, R = 4/8. Pmax = 1, Rmax = 0.5.
        double f = CaptionMetrics.RougeL(H(("1", "a b c d")), R(("1", new[] { "a b x x x x", "a b c d e f g h" })));
        Assert.Equal((1 + 1.44) * 1 * 0.5 / (0.5 + 1.44 * 1), f, 12);
    }

    [Fact]
    public void Cider_is_zero_for_one_image_and_follows_the_formula_for_two()
    {
        Assert.Equal(0, CaptionMetrics.CiderD(H(("1", "a b c d")), R(("1", new[] { "a b c d" }))));
        // Two images with disjoint words: every n-gram has idf ln 2 (df = 1, N = 2).
        // Image 1: hypothesis "a b c d" vs reference "a b c d e": cosine per n = 4/(2·√5), 3/(√3·2), 2/(√2·√3), 1/(1·√2),
        // length penalty exp(−(3 − 4)²/72). Image 2: identical sentences → 10.
        double cos = (4 / (2 * Math.Sqrt(5)) + 3 / (Math.Sqrt(3) * 2) + 2 / (Math.Sqrt(2) * Math.Sqrt(3)) + 1 / Math.Sqrt(2)) / 4;
        double image1 = 10 * cos * Math.Exp(-1.0 / 72);
        double cider = CaptionMetrics.CiderD(H(("1", "a b c d"), ("2", "f g h i j")), R(("1", new[] { "a b c d e" }), ("2", new[] { "f g h i j" })));
        Assert.Equal((image1 + 10) / 2, cider, 9);
    }

    [Theory]
    [InlineData("A man's dog, running.", "a man 's dog running")]
    [InlineData("Don't stop!", "do n't stop")]
    [InlineData("Two people (a man and a woman) sit.", "two people a man and a woman sit")]
    [InlineData("a 1/2 cup of \"tea\"", "a 1\\/2 cup of tea")]
    [InlineData("The grey cat near the centre", "the gray cat near the center")]
    [InlineData("A colour photo", "a color photo")]
    [InlineData("It costs 1,000.50 dollars; wow", "it costs 1,000.50 dollars wow")]
    [InlineData("A well-dressed man", "a well-dressed man")]
    public void Ptb_tokenization_of_typical_captions(string input, string expected) =>
        Assert.Equal(expected, PtbTokenizer.Tokenize(input));
}
