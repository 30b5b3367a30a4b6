using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace VlPeft.Distributed;

/// <summary>
/// The processes of one run: a single process (rank 0 of 1), or the ranks <c>mpirun</c> started, joined through Open MPI.
/// <see cref="Current"/> is what training and evaluation consult; the CLI sets it once at start.
/// </summary>
public sealed class Cluster
{
    Cluster(int rank, int size, bool mpi)
    {
        Rank = rank;
        Size = size;
        usesMpi = mpi;
    }

    readonly bool usesMpi;

    public static Cluster Current { get; private set; } = new(0, 1, mpi: false);

    public int Rank { get; }
    public int Size { get; }
    public bool IsRoot => Rank == 0;
    public bool IsDistributed => Size > 1;

    /// <summary>Ranks that share this machine (Open MPI's local size; 1 for a single process).</summary>
    public int RanksOnThisMachine => usesMpi && int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), out int n) ? n : 1;

    /// <summary>
    /// Joins the MPI job this process was started in (Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE), or stays a single
    /// process. Each rank gets cores / ranks-on-this-machine threads unless OMP_NUM_THREADS says otherwise.
    /// </summary>
    public static Cluster StartFromEnvironment()
    {
        if (Current.usesMpi) return Current;
        if (Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is null)
        {
            if (Environment.GetEnvironmentVariable("PMI_SIZE") is string other && other != "1")
                throw new BadInputException("this process was started by an MPI launcher other than Open MPI's mpirun (PMI_SIZE is set); vlpeft speaks Open MPI 4.x's interface: start it with Open MPI's mpirun");
            return Current;
        }
        if (OpenMpi.TryLoad() is string why) throw new BadInputException($"started under mpirun, but {why}");
        var (rank, size) = OpenMpi.Init();
        Current = new Cluster(rank, size, mpi: true);
        if (Environment.GetEnvironmentVariable("OMP_NUM_THREADS") is null && Current.RanksOnThisMachine > 1)
            TorchSharp.torch.set_num_threads(Math.Max(1, Environment.ProcessorCount / Current.RanksOnThisMachine));
        return Current;
    }

    /// <summary>Ends MPI cleanly (all ranks must call it); nothing for a single process.</summary>
    public void Finish()
    {
        if (usesMpi) OpenMpi.Shutdown();
    }

    /// <summary>Ends every rank of the job at once: one rank failed and the others would wait for it forever.</summary>
    public void Abort(int code)
    {
        if (usesMpi) OpenMpi.Abort(code);
    }

    /// <summary>Open MPI's version line, or why it cannot be loaded (for <c>vlpeft doctor</c>).</summary>
    public static (string? Version, string? Error) MpiLibrary()
    {
        if (OpenMpi.TryLoad() is string why) return (null, why);
        return (OpenMpi.LibraryVersion(), null);
    }

    public void Barrier()
    {
        if (IsDistributed) OpenMpi.Barrier();
    }

    /// <summary>Element-wise sum over ranks, in place.</summary>
    public void AllReduceSum(Span<float> values)
    {
        if (IsDistributed) OpenMpi.AllReduceSum(values);
    }

    /// <inheritdoc cref="AllReduceSum(Span{float})"/>
    public void AllReduceSum(Span<double> values)
    {
        if (IsDistributed) OpenMpi.AllReduceSum(values);
    }

    /// <summary>Rank 0's bytes on every rank (the buffer has the same length everywhere).</summary>
    public void Broadcast(Span<byte> buffer)
    {
        if (IsDistributed) OpenMpi.Broadcast(buffer, root: 0);
    }

    /// <summary>Every rank's value, in rank order (JSON on the wire).</summary>
    public IReadOnlyList<T> AllGather<T>(T mine)
    {
        if (!IsDistributed) return new[] { mine };
        return OpenMpi.AllGather(JsonSerializer.SerializeToUtf8Bytes(mine), Size).Select(b => JsonSerializer.Deserialize<T>(b)!).ToList();
    }

    /// <summary>
    /// Refuses to go on when ranks disagree on something that must be the same everywhere (the resolved config, the
    /// trainable tensors): every rank compares digests and fails with the same message.
    /// </summary>
    public void RequireSame(string what, string value)
    {
        if (!IsDistributed) return;
        var digests = AllGather(Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(value)))[..16]);
        var differing = Enumerable.Range(0, Size).Where(r => digests[r] != digests[0]).ToList();
        if (differing.Count > 0)
            throw new BadInputException($"ranks disagree on {what}: rank{(differing.Count > 1 ? "s" : "")} {string.Join(", ", differing)} differ{(differing.Count > 1 ? "" : "s")} from rank 0 " +
                "(start every rank with the same command, files and vlpeft version)");
    }

    /// <summary>
    /// Maps <paramref name="chunk"/>-sized chunks of <paramref name="items"/> with each chunk computed by one rank (chunk i by
    /// rank i mod size) and the results gathered to every rank in the items' order: evaluation sharded across ranks gives
    /// what one process computes, chunk for chunk.
    /// </summary>
    public IReadOnlyList<TOut> MapChunks<TIn, TOut>(IReadOnlyList<TIn> items, int chunk, Func<TIn[], IReadOnlyList<TOut>> map)
    {
        var chunks = items.Chunk(chunk).ToList();
        var mine = new List<List<TOut>>();
        for (int i = Rank; i < chunks.Count; i += Size) mine.Add(map(chunks[i]).ToList());
        if (!IsDistributed) return mine.SelectMany(c => c).ToList();
        var gathered = AllGather(mine);
        var result = new List<TOut>(items.Count);
        for (int i = 0; i < chunks.Count; i++) result.AddRange(gathered[i % Size][i / Size]);
        return result;
    }
}
