using TorchSharp;
using VlPeft.Peft.Lora;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Bench;

/// <summary>
/// A 768→768 linear at batch 32×128 (issue targets): LoRA r=8 forward+backward against the frozen
/// base's forward+backward (≤ 1.15×), and merged-LoRA inference against the base (≤ 1.02×). The
/// input requires grad in the training variants, as it does inside a network, so the base's
/// backward computes dx.
/// </summary>
static class LoraLinearBench
{
    public static int Run(string[] args)
    {
        int rounds = args.Length > 0 ? int.Parse(args[0]) : 40;
        bool tuned = !args.Contains("--default-malloc") && VlPeft.Runtime.NativeAllocator.KeepFreedBlocksForReuse();
        torch.manual_seed(0);
        using var baseLayer = new Linear(768, 768);
        using var loraLayer = new Linear(768, 768);
        using (torch.no_grad()) { loraLayer.weight.copy_(baseLayer.weight); loraLayer.bias!.copy_(baseLayer.bias!); }
        foreach (var layer in new[] { baseLayer, loraLayer })
        {
            layer.weight.requires_grad = false;
            layer.bias!.requires_grad = false;
        }
        var lora = new LoraAdapter("default", loraLayer, rank: 8, alpha: 16, dropout: 0, useRslora: false);
        loraLayer.Attach(lora);
        using var x = torch.randn(32, 128, 768).requires_grad_(true);

        void Train(Linear layer)
        {
            using var scope = torch.NewDisposeScope();
            layer.call(x).sum().backward();
            x.grad?.zero_();
            foreach (var p in layer.parameters()) p.grad?.zero_();
        }
        void Infer(Linear layer)
        {
            using var scope = torch.NewDisposeScope();
            using var _ = torch.no_grad();
            layer.call(x);
        }

        var train = Timing.MedianSeconds(3, rounds, () => Train(baseLayer), () => Train(loraLayer));
        var unmerged = Timing.MedianSeconds(3, rounds, () => Infer(baseLayer), () => Infer(loraLayer));
        loraLayer.Merge();
        var merged = Timing.MedianSeconds(3, rounds, () => Infer(baseLayer), () => Infer(loraLayer));

        Console.WriteLine($"threads {torch.get_num_threads()}, {rounds} rounds, medians, malloc reuse {(tuned ? "on" : "off")}");
        Console.WriteLine($"fwd+bwd  frozen base {train[0] * 1e3,8:F2} ms   LoRA r=8 {train[1] * 1e3,8:F2} ms   ratio {train[1] / train[0]:F3} (target ≤ 1.15)");
        Console.WriteLine($"infer    base        {unmerged[0] * 1e3,8:F2} ms   unmerged {unmerged[1] * 1e3,8:F2} ms   ratio {unmerged[1] / unmerged[0]:F3}");
        Console.WriteLine($"infer    base        {merged[0] * 1e3,8:F2} ms   merged   {merged[1] * 1e3,8:F2} ms   ratio {merged[1] / merged[0]:F3} (target ≤ 1.02)");
        return 0;
    }
}
