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

    /// <summary>
    /// <c>qformer-step [steps]</c>: the peak probe and all four cases; <c>qformer-step STEPS fp32|bf16 TEXT_TOKENS</c>: one
    /// case as one JSON line, and <c>qformer-step peak</c>: the probe alone (bench/reference/run-paired.sh uses both);
    /// <c>qformer-step curve [steps]</c>: fp32 and bf16 loss curves (<see cref="Curve"/>).
    /// </summary>
    public static int Run(string[] args)
    {
        if (args.Length > 0 && args[0] == "peak")
        {
            MatmulPeak();
            return 0;
        }
        if (args.Length > 0 && args[0] == "curve") return Curve(args.Length > 1 ? int.Parse(args[1]) : 50);
        int steps = args.Length > 0 ? int.Parse(args[0]) : 20;
        if (args.Length >= 3)
        {
            var dtypeOnly = args[1] == "bf16" ? ScalarType.BFloat16 : args[1] == "fp32" ? ScalarType.Float32
                : throw new ArgumentException($"dtype '{args[1]}': expected fp32 or bf16");
            var (f, b, o, trainable) = Step(dtypeOnly, int.Parse(args[2]), steps);
            Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["side"] = "vlpeft", ["dtype"] = args[1], ["text"] = int.Parse(args[2]), ["steps_per_s"] = 1 / (f + b + o),
                ["forward_ms"] = f * 1e3, ["backward_ms"] = b * 1e3, ["optimizer_ms"] = o * 1e3,
                ["threads"] = torch.get_num_threads(), ["trainable"] = trainable,
                ["needed_gflop"] = NeededGflop(new QFormerConfig(), int.Parse(args[2])),
            }));
            return 0;
        }
        Cases(steps, MatmulPeak());
        return 0;
    }

    /// <summary>The best GFLOP/s of square matmuls and of the step's own largest shapes (image keys/values, the FFN), per dtype.</summary>
    static Dictionary<ScalarType, double> MatmulPeak()
    {
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
        return peak;
    }

    static void Cases(int steps, Dictionary<ScalarType, double> peak)
    {
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            foreach (int text in new[] { 0, 16 })
            {
                var config = new QFormerConfig();
                var (f, b, o, _) = Step(dtype, text, steps);
                double total = f + b + o, gflop = NeededGflop(config, text);
                Console.WriteLine($"{dtype} base, {text} text tokens: {1 / total:F2} steps/s (forward {f * 1e3:F0} ms, backward {b * 1e3:F0} ms, " +
                    $"optimizer {o * 1e3:F1} ms); needed work {gflop:F1} GFLOP → {gflop / total:F1} GFLOP/s = {100 * gflop / total / peak[dtype]:F0}% of the {dtype} matmul peak");
            }
    }

    /// <summary>
    /// <c>qformer-step curve [steps]</c>: the same LoRA training (same initial weights, inputs and LoRA init; dropout off so
    /// that only precision differs; loss = mean((h − t)²) to a fixed random t, lr 1e-3) with an fp32 and a bf16 base, 0 text
    /// tokens; the loss curves side by side, their largest relative difference, and the step-time ratio.
    /// </summary>
    static int Curve(int steps)
    {
        var runs = new[] { ScalarType.Float32, ScalarType.BFloat16 }.Select(dtype =>
        {
            var losses = new List<double>();
            var (f, b, o, _) = Step(dtype, 0, steps - 3, losses);
            return (Dtype: dtype, Losses: losses, Seconds: f + b + o);
        }).ToList();
        var (fp32, bf16) = (runs[0], runs[1]);
        for (int i = 0; i < steps; i += Math.Max(1, steps / 10))
            Console.WriteLine($"step {i + 1,3}: fp32 loss {fp32.Losses[i]:F5}  bf16 loss {bf16.Losses[i]:F5}");
        Console.WriteLine($"step {steps,3}: fp32 loss {fp32.Losses[^1]:F5}  bf16 loss {bf16.Losses[^1]:F5}");
        double worst = fp32.Losses.Zip(bf16.Losses, (a, b) => Math.Abs(a - b) / Math.Abs(a)).Max();
        Console.WriteLine($"largest relative loss difference over {steps} steps: {100 * worst:F2} %; fp32 loss fell {100 * (1 - fp32.Losses[^1] / fp32.Losses[0]):F1} %, bf16 {100 * (1 - bf16.Losses[^1] / bf16.Losses[0]):F1} %");
        Console.WriteLine($"step time (median, dropout off): fp32 {fp32.Seconds * 1e3:F0} ms, bf16 {bf16.Seconds * 1e3:F0} ms → bf16 {fp32.Seconds / bf16.Seconds:F2}× the fp32 speed");
        return 0;
    }

    /// <summary>
    /// Median forward, backward and optimizer seconds of the step, and the trainable parameter count. With
    /// <paramref name="losses"/>, every step's loss is recorded there and dropout is off (eval mode).
    /// </summary>
    static (double Forward, double Backward, double Optimizer, long Trainable) Step(ScalarType dtype, int text, int steps, List<double>? losses = null)
    {
        torch.manual_seed(0);
        var config = new QFormerConfig();
        using var qformer = new QFormerModel(config, withTextInput: true);
        qformer.to(dtype);
        foreach (var p in qformer.parameters()) p.requires_grad = false;
        var peft = PeftModel.Create(qformer, new LoraConfig { R = Rank, LoraAlpha = 8, TargetModules = ModuleSelector.FromRegex(Targets) });
        var trainable = qformer.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        using var optimizer = VlPeft.Training.OptimizerFactory.AdamW(trainable, losses is null ? 1e-4 : 1e-3, 0.0);
        using var queries = torch.randn(Batch, Queries, config.HiddenSize).to(dtype);
        using var image = torch.randn(Batch, ImageTokens, config.EncoderHiddenSize).to(dtype);
        using var ids = torch.randint(1000, new long[] { Batch, text }, dtype: ScalarType.Int64);
        var inputs = new QFormerInputs(queries, image, text > 0 ? ids : null, text > 0 ? torch.ones_like(ids) : null);
        if (losses is null) qformer.train(); else qformer.eval();
        // The curve regresses the output onto a fixed random target (mean(h²) is pinned near 1 by the final LayerNorm).
        torch.manual_seed(1);
        using var target = losses is null ? null : torch.randn(Batch, Queries + text, config.HiddenSize);

        var (forward, backward, step) = (new List<double>(), new List<double>(), new List<double>());
        for (int i = 0; i < steps + 3; i++)
        {
            using var scope = torch.NewDisposeScope();
            var watch = Stopwatch.StartNew();
            var output = qformer.call(inputs).to(ScalarType.Float32);
            var loss = (target is null ? output : output - target).pow(2).mean();
            double f = watch.Elapsed.TotalSeconds;
            loss.backward();
            double b = watch.Elapsed.TotalSeconds - f;
            optimizer.step();
            optimizer.zero_grad();
            double o = watch.Elapsed.TotalSeconds - f - b;
            losses?.Add(loss.item<float>());
            if (i < 3) continue;   // warm-up
            forward.Add(f); backward.Add(b); step.Add(o);
        }
        static double Median(List<double> x) => x.OrderBy(v => v).ElementAt(x.Count / 2);
        GC.KeepAlive(peft);
        return (Median(forward), Median(backward), Median(step), trainable.Sum(p => p.parameter.numel()));
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
