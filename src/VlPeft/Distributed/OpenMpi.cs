using System.Runtime.InteropServices;
using System.Text;

namespace VlPeft.Distributed;

/// <summary>
/// The few MPI C calls data parallelism needs, bound to Open MPI 4.x (libmpi.so.40) by P/Invoke. Open MPI's handles
/// (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are the addresses of exported globals, so they are looked up by symbol.
/// MPI.NET was not used: it declares handles the MPICH / Microsoft MPI way (integer constants such as 0x44000000 for
/// MPI_COMM_WORLD), which Open MPI's ABI does not have.
/// </summary>
static class OpenMpi
{
    const string Library = "libmpi.so.40";
    const int ThreadSerialized = 2;   // MPI_THREAD_SERIALIZED: calls come from one thread at a time
    static readonly IntPtr InPlace = 1; // MPI_IN_PLACE

    static IntPtr handle;

    /// <summary>Loads libmpi with RTLD_GLOBAL (Open MPI's plugins resolve symbols against it), or returns why it cannot.</summary>
    public static string? TryLoad()
    {
        if (handle != IntPtr.Zero) return null;
        const int RtldNow = 2, RtldGlobal = 0x100;
        handle = dlopen(Library, RtldNow | RtldGlobal);
        return handle == IntPtr.Zero ? $"{Library} cannot be loaded ({Marshal.PtrToStringAnsi(dlerror())}); install Open MPI (Debian: openmpi-bin libopenmpi-dev)" : null;
    }

    /// <summary>The library's own version line (callable before MPI_Init).</summary>
    public static string LibraryVersion()
    {
        var buffer = new byte[256];   // MPI_MAX_LIBRARY_VERSION_STRING
        Check(MPI_Get_library_version(buffer, out int length), "MPI_Get_library_version");
        return Encoding.ASCII.GetString(buffer, 0, length).Split('\n')[0].Trim();
    }

    public static (int Rank, int Size) Init()
    {
        Check(MPI_Init_thread(IntPtr.Zero, IntPtr.Zero, ThreadSerialized, out _), "MPI_Init_thread");
        Check(MPI_Comm_rank(World, out int rank), "MPI_Comm_rank");
        Check(MPI_Comm_size(World, out int size), "MPI_Comm_size");
        return (rank, size);
    }

    public static void Shutdown() => Check(MPI_Finalize(), "MPI_Finalize");

    public static void Abort(int code) => MPI_Abort(World, code);

    public static void Barrier() => Check(MPI_Barrier(World), "MPI_Barrier");

    public static void AllReduceSum(Span<float> buffer) =>
        Check(MPI_Allreduce(InPlace, ref MemoryMarshal.GetReference(MemoryMarshal.AsBytes(buffer)), buffer.Length, Symbol("ompi_mpi_float"), Symbol("ompi_mpi_op_sum"), World), "MPI_Allreduce");

    public static void AllReduceSum(Span<double> buffer) =>
        Check(MPI_Allreduce(InPlace, ref MemoryMarshal.GetReference(MemoryMarshal.AsBytes(buffer)), buffer.Length, Symbol("ompi_mpi_double"), Symbol("ompi_mpi_op_sum"), World), "MPI_Allreduce");

    public static void Broadcast(Span<byte> buffer, int root) =>
        Check(MPI_Bcast(ref MemoryMarshal.GetReference(buffer), buffer.Length, Symbol("ompi_mpi_byte"), root, World), "MPI_Bcast");

    /// <summary>Every rank's bytes, in rank order.</summary>
    public static byte[][] AllGather(byte[] mine, int size)
    {
        var lengths = new int[size];
        Check(MPI_Allgather(new[] { mine.Length }, 1, Symbol("ompi_mpi_int"), lengths, 1, Symbol("ompi_mpi_int"), World), "MPI_Allgather");
        var offsets = new int[size];
        for (int i = 1; i < size; i++) offsets[i] = checked(offsets[i - 1] + lengths[i - 1]);
        var all = new byte[offsets[^1] + lengths[^1]];
        Check(MPI_Allgatherv(mine, mine.Length, Symbol("ompi_mpi_byte"), all, lengths, offsets, Symbol("ompi_mpi_byte"), World), "MPI_Allgatherv");
        return Enumerable.Range(0, size).Select(i => all.AsSpan(offsets[i], lengths[i]).ToArray()).ToArray();
    }

    static IntPtr World => Symbol("ompi_mpi_comm_world");

    static IntPtr Symbol(string name) => NativeLibrary.GetExport(handle, name);

    static void Check(int code, string call)
    {
        // Open MPI's default handler (MPI_ERRORS_ARE_FATAL) aborts first; this catches a handler changed by the environment.
        if (code != 0) throw new InvalidOperationException($"{call} failed with MPI error code {code}");
    }

    [DllImport("libc.so.6")] static extern IntPtr dlopen(string file, int mode);
    [DllImport("libc.so.6")] static extern IntPtr dlerror();
    [DllImport(Library)] static extern int MPI_Get_library_version(byte[] version, out int length);
    [DllImport(Library)] static extern int MPI_Init_thread(IntPtr argc, IntPtr argv, int required, out int provided);
    [DllImport(Library)] static extern int MPI_Comm_rank(IntPtr comm, out int rank);
    [DllImport(Library)] static extern int MPI_Comm_size(IntPtr comm, out int size);
    [DllImport(Library)] static extern int MPI_Finalize();
    [DllImport(Library)] static extern int MPI_Abort(IntPtr comm, int code);
    [DllImport(Library)] static extern int MPI_Barrier(IntPtr comm);
    [DllImport(Library)] static extern int MPI_Allreduce(IntPtr send, ref byte receive, int count, IntPtr type, IntPtr op, IntPtr comm);
    [DllImport(Library)] static extern int MPI_Bcast(ref byte buffer, int count, IntPtr type, int root, IntPtr comm);
    [DllImport(Library)] static extern int MPI_Allgather(int[] send, int sendCount, IntPtr sendType, int[] receive, int receiveCount, IntPtr receiveType, IntPtr comm);
    [DllImport(Library)] static extern int MPI_Allgatherv(byte[] send, int sendCount, IntPtr sendType, byte[] receive, int[] counts, int[] offsets, IntPtr receiveType, IntPtr comm);
}
