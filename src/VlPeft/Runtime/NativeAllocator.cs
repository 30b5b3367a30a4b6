using System.Runtime.InteropServices;

namespace VlPeft.Runtime;

/// <summary>
/// libtorch's CPU tensors come straight from glibc malloc. Activation-sized blocks (megabytes) are
/// above glibc's mmap threshold, so every training step maps fresh pages and faults them in, which
/// here cost more than the small LoRA matmuls themselves. Raising the mmap and trim thresholds
/// lets freed blocks be reused, as PyTorch users get from jemalloc/tcmalloc. Call once at start-up
/// of long-running work; set VLPEFT_KEEP_MALLOC=1 to leave glibc's defaults alone.
/// </summary>
public static class NativeAllocator
{
    const int M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3;

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int Mallopt(int parameter, int value);

    static bool tuned;

    [DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int MallocTrim(nuint pad);

    /// <summary>
    /// Hands the free memory glibc keeps back to the system. After loading a checkpoint, whose per-tensor read buffers
    /// the raised thresholds would otherwise keep for the life of the process (a quantized model's RSS would stay
    /// near the full-precision size it was read in).
    /// </summary>
    public static void ReleaseFreeMemory()
    {
        if (!tuned) return;   // glibc's defaults already return large blocks when they are freed
        MallocTrim(0);
    }

    /// <summary>Returns true when the thresholds were raised (Linux glibc only; idempotent).</summary>
    public static bool KeepFreedBlocksForReuse()
    {
        if (tuned) return true;
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("VLPEFT_KEEP_MALLOC") == "1") return false;
        try
        {
            // 512 MiB: blocks below it come from the heap and are reused; the heap is trimmed only above 1 GiB free.
            tuned = Mallopt(M_MMAP_THRESHOLD, 512 << 20) == 1 && Mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            tuned = false; // not glibc (e.g. musl): nothing to tune
        }
        return tuned;
    }
}
