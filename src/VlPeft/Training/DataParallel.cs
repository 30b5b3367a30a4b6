using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using VlPeft.Distributed;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace VlPeft.Training;

/// <summary>
/// What keeps the ranks of a data-parallel run in step: the same trainable values at start (rank 0's, broadcast), and
/// after each optimizer step's backward passes the gradients summed over ranks, all trainable tensors in one flat fp32
/// buffer (PEFT gradients are small: one message per step). Each rank runs whole micro-batches (see <see cref="Trainer"/>),
/// and every micro-batch loss is already divided by the step's micro-batch count, so the sum is the one-process gradient.
/// </summary>
public sealed class DataParallel
{
    readonly Cluster cluster;
    readonly IReadOnlyList<(string Name, Parameter Parameter)> trainable;

    public DataParallel(Cluster cluster, IReadOnlyList<(string Name, Parameter Parameter)> trainable)
    {
        this.cluster = cluster;
        this.trainable = trainable;
    }

    /// <summary>Seconds spent in all-reduce so far (for the throughput log).</summary>
    public double AllReduceSeconds { get; private set; }

    /// <summary>Refuses different trainable sets across ranks, then gives every rank rank 0's values.</summary>
    public void BroadcastParameters()
    {
        if (!cluster.IsDistributed) return;
        cluster.RequireSame("the trainable tensors", string.Join("\n", trainable.Select(t => $"{t.Name} {t.Parameter.dtype} [{string.Join(",", t.Parameter.shape)}]")));
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var flat = Flatten(trainable.Select(t => (Tensor)t.Parameter));
        cluster.Broadcast(flat.bytes);
        CopyBack(flat, trainable.Select(t => (Tensor)t.Parameter));
    }

    /// <summary>
    /// Sums the gradients over ranks. A rank that ran no micro-batch of this step (the last step of an epoch can have
    /// fewer micro-batches than there are ranks) contributes zeros.
    /// </summary>
    public void AllReduceGradients()
    {
        if (!cluster.IsDistributed) return;
        var watch = Stopwatch.StartNew();
        using var scope = torch.NewDisposeScope();
        foreach (var (_, p) in trainable)
            if (p.grad is null) (p.sum() * 0).backward();   // materializes a zero gradient (TorchSharp's grad has no setter)
        using var _ = torch.no_grad();
        var flat = Flatten(trainable.Select(t => t.Parameter.grad!));
        cluster.AllReduceSum(MemoryMarshal.Cast<byte, float>(flat.bytes));
        CopyBack(flat, trainable.Select(t => t.Parameter.grad!));
        AllReduceSeconds += watch.Elapsed.TotalSeconds;
    }

    static Tensor Flatten(IEnumerable<Tensor> tensors) =>
        torch.cat(tensors.Select(t => t.detach().reshape(-1).to(ScalarType.Float32)).ToArray()).contiguous();

    static void CopyBack(Tensor flat, IEnumerable<Tensor> targets)
    {
        long offset = 0;
        foreach (var target in targets)
        {
            long n = target.numel();
            target.copy_(flat.narrow(0, offset, n).view(target.shape));
            offset += n;
        }
    }
}
