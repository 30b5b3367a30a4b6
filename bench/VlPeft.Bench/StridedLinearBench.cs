using TorchSharp;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Bench;

/// <summary>
/// A frozen 768→768 linear on a non-contiguous 3-D input (the query slice [16, 32, 768] of a Q-Former layer's
/// [16, 48, 768] output, as with text tokens), forward + backward to the input, fp32 and bf16: libtorch 2.x's
/// matmul expands a frozen weight to [B, in, out] and copies it for such inputs; Linear folds them to 2-D first.
/// Prints ms per step against the same layer on a contiguous input of the same shape.
/// </summary>
static class StridedLinearBench
{
    public static int Run(string[] args)
    {
        int rounds = args.Length > 0 ? int.Parse(args[0]) : 200;
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            torch.manual_seed(0);
            using var layer = new Linear(768, 768);
            layer.to(dtype);
            foreach (var p in layer.parameters()) p.requires_grad = false;
            using var full = torch.randn(16, 48, 768).to(dtype).requires_grad_(true);
            double Step(Func<Tensor> input)
            {
                for (int i = 0; i < 10; i++) Once(input);
                var watch = System.Diagnostics.Stopwatch.StartNew();
                for (int i = 0; i < rounds; i++) Once(input);
                return watch.Elapsed.TotalMilliseconds / rounds;
            }
            void Once(Func<Tensor> input)
            {
                using var scope = torch.NewDisposeScope();
                layer.call(input()).sum().backward();
                full.grad?.zero_();
            }
            double contiguous = Step(() => full[.., ..32].contiguous());
            double strided = Step(() => full[.., ..32]);
            double again = Step(() => full[.., ..32].contiguous());
            contiguous = Math.Min(contiguous, again);   // the first measurement also warms the allocator
            Console.WriteLine($"{dtype}: non-contiguous input {strided:F3} ms/step, contiguous copy {contiguous:F3} ms/step ({strided / contiguous:F2}×)");
        }
        return 0;
    }
}
