using System.Diagnostics;
using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Models.QFormer;
using VlPeft.Peft;
using VlPeft.Peft.Lora;
using static TorchSharp.torch;

namespace VlPeft.Bench;

/// <summary>
/// The paper-size Q-Former LoRA step of the performance issue: InstructBLIP's Q-Former (12 layers, 768 wide, 12 heads,
/// cross-attention every 2nd layer over [16, 257, 1408] image features), 32 queries, `qformer-lora-all` r = 8, batch 16,
/// AdamW on the LoRA tensors, with 0 and 16 text tokens, an fp32 base and a bf16 base (LoRA fp32). Prints steps/s with the
/// forward / backward / optimizer split (medians), the needed-work GFLOP/s (frozen base: no weight gradients, no gradient
/// into the constant image features) and that as a fraction of the same run's matmul peak (MFU), measured first.
/// </summary>
static class QFormerStepBench
{
    const int Batch = 16, Queries = 32, ImageTokens = 257, Rank = 8;
    const string Targets = @"encoder\.layer\.\d+\.(attention\.attention\.(query|value)|crossattention\.(attention\.(query|key|value)|output\.dense)|(intermediate|output|intermediate_query|output_query)\.dense)";

    public static int Run(string[] args)
    {
        int steps = args.Length > 0 ? int.Parse(args[0]) : 20;
        // Peak: the best of square matmuls and the step's own largest shapes (image keys/values, the FFN).
        var peak = new Dictionary<ScalarType, double>();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            foreach (var (m, k, n) in new[] { (1024, 1024, 1024), (2048, 2048, 2048), (Batch * ImageTokens, 1408, 768), (Batch * Queries, 768, 3072) })
            {
                using var a = torch.randn(m, k).to(dtype);
                using var b = torch.randn(k, n).to(dtype);
                double seconds = Timing.MedianSeconds(2, 5, () => { using var c = a.matmul(b); })[0];
                double gflops = 2.0 * m * k * n / seconds / 1e9;
                peak[dtype] = Math.Max(peak.GetValueOrDefault(dtype), gflops);
                Console.WriteLine($"matmul {dtype} [{m}×{k}]·[{k}×{n}]: {gflops:F1} GFLOP/s");
            }
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            foreach (int text in new[] { 0, 16 })
                Step(dtype, text, steps, peak[dtype]);
        return 0;
    }

    static void Step(ScalarType dtype, int text, int steps, double peakGflops)
    {
        torch.manual_seed(0);
        var config = new QFormerConfig();
        using var qformer = new QFormerModel(config, withTextInput: true);
        qformer.to(dtype);
        foreach (var p in qformer.parameters()) p.requires_grad = false;
        var peft = PeftModel.Create(qformer, new LoraConfig { R = Rank, LoraAlpha = 8, TargetModules = ModuleSelector.FromRegex(Targets) });
        var trainable = qformer.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        using var optimizer = VlPeft.Training.OptimizerFactory.AdamW(trainable, 1e-4, 0.0);
        using var queries = torch.randn(Batch, Queries, config.HiddenSize).to(dtype);
        using var image = torch.randn(Batch, ImageTokens, config.EncoderHiddenSize).to(dtype);
        using var ids = torch.randint(1000, new long[] { Batch, text }, dtype: ScalarType.Int64);
        var inputs = new QFormerInputs(queries, image, text > 0 ? ids : null, text > 0 ? torch.ones_like(ids) : null);
        qformer.train();

        var (forward, backward, step) = (new List<double>(), new List<double>(), new List<double>());
        for (int i = 0; i < steps + 3; i++)
        {
            using var scope = torch.NewDisposeScope();
            var watch = Stopwatch.StartNew();
            var loss = qformer.call(inputs).to(ScalarType.Float32).pow(2).mean();
            double f = watch.Elapsed.TotalSeconds;
            loss.backward();
            double b = watch.Elapsed.TotalSeconds - f;
            optimizer.step();
            optimizer.zero_grad();
            double o = watch.Elapsed.TotalSeconds - f - b;
            if (i < 3) continue;   // warm-up
            forward.Add(f); backward.Add(b); step.Add(o);
        }
        static double Median(List<double> x) => x.OrderBy(v => v).ElementAt(x.Count / 2);
        double total = Median(forward) + Median(backward) + Median(step);
        double gflop = NeededGflop(config, text);
        Console.WriteLine($"{dtype} base, {text} text tokens: {1 / total:F2} steps/s (forward {Median(forward) * 1e3:F0} ms, backward {Median(backward) * 1e3:F0} ms, " +
            $"optimizer {Median(step) * 1e3:F1} ms); needed work {gflop:F1} GFLOP → {gflop / total:F1} GFLOP/s = {100 * gflop / total / peakGflops:F0}% of the {dtype} matmul peak");
        GC.KeepAlive(peft);
    }

    /// <summary>
    /// Matmul work a LoRA step needs on a frozen base: every linear's forward (2·T·in·out) and its input gradient (the same
    /// again), except the cross-attention key/value projections of the constant image features (forward only); LoRA's A and
    /// B forward, input and weight gradients; attention scores and context forward and backward (×3). Elementwise work is not counted.
    /// </summary>
    static double NeededGflop(QFormerConfig c, int text)
    {
        double h = c.HiddenSize, f = c.IntermediateSize, e = c.EncoderHiddenSize, heads = c.NumAttentionHeads, d = h / heads;
        double q = Batch * Queries, all = Batch * (Queries + text), img = Batch * ImageTokens;
        double Linear(double tokens, double inF, double outF, bool needsInputGrad, bool lora) =>
            2 * tokens * inF * outF * (needsInputGrad ? 2 : 1) + (lora ? 2 * tokens * Rank * (inF + outF) * 3 : 0);
        double Attention(double tq, double tk, double perExample) => 3 * 2 * 2 * Batch * heads * perExample * d;   // QKᵀ and AV, fwd + 2 bwd
        double total = 0;
        for (int layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            double s = Queries + text;
            total += Linear(all, h, h, true, true) * 2 + Linear(all, h, h, true, false)      // q, v (LoRA); k
                + Linear(all, h, h, true, false)                                            // attention output dense
                + Attention(0, 0, s * s);
            if (layer % c.CrossAttentionFrequency == 0)
                total += Linear(q, h, h, true, true) + Linear(img, e, h, false, true) * 2 + Linear(q, h, h, true, true)   // query; key, value of the image; output
                    + Attention(0, 0, Queries * ImageTokens);
            total += Linear(q, h, f, true, true) + Linear(q, f, h, true, true);              // query FFN
            if (text > 0) total += Linear(Batch * text, h, f, true, true) + Linear(Batch * text, f, h, true, true);   // text FFN
        }
        return total / 1e9;
    }
}
