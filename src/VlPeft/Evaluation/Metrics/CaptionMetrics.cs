namespace VlPeft.Evaluation.Metrics;

/// <summary>
/// pycocoevalcap's BLEU-1..4 (corpus level, "closest" reference length), ROUGE-L (β = 1.2) and
/// CIDEr-D (n = 4, σ = 6, IDF from the evaluated references, ×10), on PTB-tokenized strings.
/// Inputs map image id → one hypothesis and image id → its references.
/// </summary>
public static class CaptionMetrics
{
    public static double[] Bleu(IReadOnlyDictionary<string, string> hypotheses, IReadOnlyDictionary<string, IReadOnlyList<string>> references)
    {
        var correct = new double[4];
        var guess = new double[4];
        double testLength = 0, referenceLength = 0;
        foreach (var (id, hypothesis) in hypotheses)
        {
            var hyp = Words(hypothesis);
            var refs = references[id].Select(Words).ToList();
            testLength += hyp.Length;
            // Closest reference length; ties go to the shorter one.
            referenceLength += refs.Select(r => r.Length).OrderBy(l => Math.Abs(l - hyp.Length)).ThenBy(l => l).First();
            for (int n = 1; n <= 4; n++)
            {
                guess[n - 1] += Math.Max(0, hyp.Length - n + 1);
                var maxRef = new Dictionary<string, int>();
                foreach (var r in refs)
                    foreach (var (gram, count) in NGrams(r, n))
                        maxRef[gram] = Math.Max(maxRef.GetValueOrDefault(gram), count);
                foreach (var (gram, count) in NGrams(hyp, n))
                    correct[n - 1] += Math.Min(count, maxRef.GetValueOrDefault(gram));
            }
        }
        const double tiny = 1e-15, small = 1e-9;
        double ratio = (testLength + tiny) / (referenceLength + small);
        var bleu = new double[4];
        double product = 1;
        for (int k = 1; k <= 4; k++)
        {
            product *= (correct[k - 1] + tiny) / (guess[k - 1] + small);
            bleu[k - 1] = Math.Pow(product, 1.0 / k);
            if (ratio < 1) bleu[k - 1] *= Math.Exp(1 - 1 / ratio);
        }
        return bleu;
    }

    public static double RougeL(IReadOnlyDictionary<string, string> hypotheses, IReadOnlyDictionary<string, IReadOnlyList<string>> references)
    {
        const double beta = 1.2;
        double total = 0;
        foreach (var (id, hypothesis) in hypotheses)
        {
            var candidate = hypothesis.Split(' ');
            double precision = 0, recall = 0;
            foreach (var reference in references[id])
            {
                var r = reference.Split(' ');
                int lcs = Lcs(r, candidate);
                precision = Math.Max(precision, (double)lcs / candidate.Length);
                recall = Math.Max(recall, (double)lcs / r.Length);
            }
            total += precision != 0 && recall != 0 ? (1 + beta * beta) * precision * recall / (recall + beta * beta * precision) : 0;
        }
        return total / hypotheses.Count;
    }

    static int Lcs(string[] a, string[] b)
    {
        var table = new int[a.Length + 1, b.Length + 1];
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
                table[i, j] = a[i - 1] == b[j - 1] ? table[i - 1, j - 1] + 1 : Math.Max(table[i - 1, j], table[i, j - 1]);
        return table[a.Length, b.Length];
    }

    public static double CiderD(IReadOnlyDictionary<string, string> hypotheses, IReadOnlyDictionary<string, IReadOnlyList<string>> references)
    {
        const int maxN = 4;
        const double sigma = 6;
        // Document frequency over the evaluated images' reference sets.
        var df = new Dictionary<string, int>();
        foreach (var id in hypotheses.Keys)
        {
            var grams = new HashSet<string>();
            foreach (var r in references[id]) foreach (var g in AllNGrams(Words(r), maxN).Keys) grams.Add(g);
            foreach (var g in grams) df[g] = df.GetValueOrDefault(g) + 1;
        }
        double logN = Math.Log(hypotheses.Count);

        (Dictionary<string, double>[] Vector, double[] Norm, int Length) Vectorize(string sentence)
        {
            var words = Words(sentence);
            var vector = Enumerable.Range(0, maxN).Select(_ => new Dictionary<string, double>()).ToArray();
            var norm = new double[maxN];
            foreach (var (gram, tf) in AllNGrams(words, maxN))
            {
                int n = gram.Count(c => c == ' ');
                double value = tf * (logN - Math.Log(Math.Max(1.0, df.GetValueOrDefault(gram))));
                vector[n][gram] = value;
                norm[n] += value * value;
            }
            // Length = number of bigrams (words − 1), as cider_scorer counts it.
            return (vector, norm.Select(Math.Sqrt).ToArray(), Math.Max(0, words.Length - 1));
        }

        double total = 0;
        foreach (var (id, hypothesis) in hypotheses)
        {
            var (hv, hn, hl) = Vectorize(hypothesis);
            var sums = new double[maxN];
            foreach (var reference in references[id])
            {
                var (rv, rn, rl) = Vectorize(reference);
                double penalty = Math.Exp(-Math.Pow(hl - rl, 2) / (2 * sigma * sigma));
                for (int n = 0; n < maxN; n++)
                {
                    double value = 0;
                    foreach (var (gram, h) in hv[n])
                        if (rv[n].TryGetValue(gram, out var r)) value += Math.Min(h, r) * r;
                    if (hn[n] != 0 && rn[n] != 0) value /= hn[n] * rn[n];
                    sums[n] += value * penalty;
                }
            }
            total += 10 * sums.Average() / references[id].Count;
        }
        return total / hypotheses.Count;
    }

    static string[] Words(string sentence) => sentence.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    static Dictionary<string, int> NGrams(string[] words, int n)
    {
        var counts = new Dictionary<string, int>();
        for (int i = 0; i + n <= words.Length; i++)
        {
            string gram = string.Join(' ', words, i, n);
            counts[gram] = counts.GetValueOrDefault(gram) + 1;
        }
        return counts;
    }

    static Dictionary<string, int> AllNGrams(string[] words, int maxN)
    {
        var counts = new Dictionary<string, int>();
        for (int n = 1; n <= maxN; n++)
            foreach (var (gram, count) in NGrams(words, n)) counts[gram] = count;
        return counts;
    }
}
