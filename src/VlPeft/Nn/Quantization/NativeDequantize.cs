using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn.Quantization;

/// <summary>Which code dequantizes: libtorch operations, or the native kernels at most up to an instruction set.</summary>
public enum DequantizeKernel { LibTorch = -1, Scalar = 0, Avx2 = 1, Avx512 = 2, Best = 3 }

/// <summary>
/// The one-pass dequantization kernels of Native/dequantize.cpp (libvlpeft_native.so, compiled with the project):
/// codes → compute dtype in one read and one write, where libtorch needs a gather, a multiply and a cast. They give the
/// same bits as the libtorch path, which serves when the library was not built (no C++ compiler), on other devices,
/// for fp16, or with VLPEFT_NATIVE=0.
/// </summary>
public static class NativeDequantize
{
    const string Library = "vlpeft_native";

    [DllImport(Library)] static extern int vlpeft_best_isa();
    [DllImport(Library)] static extern void vlpeft_dequantize_4bit(IntPtr packed, IntPtr absmax, IntPtr absmaxCodes, IntPtr nestedCode,
        IntPtr nestedAbsmax, long nestedBlock, float offset, IntPtr code, long block, long inFeatures,
        long row0, long rows, IntPtr rowIds, long col0, long cols, IntPtr output, int outType, int maxIsa);
    [DllImport(Library)] static extern void vlpeft_dequantize_int8(IntPtr values, IntPtr rowAbsmax, long inFeatures,
        long row0, long rows, IntPtr rowIds, long col0, long cols, IntPtr output, int outType, int maxIsa);
    // TorchSharp keeps a tensor's data pointer internal; its native library exports it.
    [DllImport("LibTorchSharp")] static extern IntPtr THSTensor_data(IntPtr tensor);

    static readonly Lazy<(DequantizeKernel Kernel, string Why)> best = new(() =>
    {
        if (Environment.GetEnvironmentVariable("VLPEFT_NATIVE") == "0") return (DequantizeKernel.LibTorch, "switched off by VLPEFT_NATIVE=0");
        // libtorch first, so that the library's libgomp.so.1 resolves to the one libtorch loaded (one thread pool).
        torch.get_num_threads();
        try { return ((DequantizeKernel)vlpeft_best_isa(), ""); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return (DequantizeKernel.LibTorch, $"lib{Library}.so did not load: was g++ missing when VlPeft was built?"); }
    });

    /// <summary>The best kernel on this machine (LibTorch when the native library is absent or switched off).</summary>
    public static DequantizeKernel Best => best.Value.Kernel;

    /// <summary>One line for <c>vlpeft doctor</c>.</summary>
    public static string Describe() => Best == DequantizeKernel.LibTorch
        ? $"libtorch operations ({best.Value.Why})"
        : $"native kernels, {Best switch { DequantizeKernel.Avx512 => "AVX-512", DequantizeKernel.Avx2 => "AVX2", _ => "scalar" }}";

    /// <summary>The kernel that will serve a request: the native ones write fp32 and bf16 on the CPU only.</summary>
    internal static DequantizeKernel Resolve(DequantizeKernel wanted, Device device, ScalarType dtype)
    {
        if (wanted == DequantizeKernel.LibTorch || Best == DequantizeKernel.LibTorch || device.type != DeviceType.CPU
            || dtype is not (ScalarType.Float32 or ScalarType.BFloat16)) return DequantizeKernel.LibTorch;
        return (DequantizeKernel)Math.Min((int)wanted, (int)Best);
    }

    static IntPtr Data(Tensor? t) => t is null ? IntPtr.Zero : THSTensor_data(t.Handle);
    static int OutType(ScalarType dtype) => dtype == ScalarType.Float32 ? 0 : 1;

    static void CheckBlock(QuantizedWeight w, long row0, long rows, long col0, long cols, Tensor output, Tensor? rowIds)
    {
        bool rowsOutside = rowIds is null ? row0 < 0 || rows < 0 || row0 + rows > w.OutFeatures : row0 != 0 || rows < 0;   // listed rows may repeat: any count
        if (rowsOutside || col0 < 0 || cols < 0 || col0 + cols > w.InFeatures)
            throw new ArgumentOutOfRangeException(nameof(row0), $"rows {row0}+{rows} × columns {col0}+{cols} are outside the [{w.OutFeatures}, {w.InFeatures}] weight");
        if (rowIds is not null && (rowIds.dtype != ScalarType.Int64 || rowIds.device_type != DeviceType.CPU || !rowIds.is_contiguous() || rowIds.numel() != rows
                || (rows > 0 && (rowIds.min().item<long>() < 0 || rowIds.max().item<long>() >= w.OutFeatures))))
            throw new ArgumentException($"row ids must be {rows} contiguous int64 CPU values in [0, {w.OutFeatures})");
        CheckOutput(output, rows, cols);
    }

    static void CheckOutput(Tensor output, long rows, long cols)
    {
        if (output.device_type != DeviceType.CPU || !output.is_contiguous() || output.numel() != rows * cols || output.dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"output must be a contiguous fp32 or bf16 CPU tensor [{rows}, {cols}]");
    }

    /// <summary>
    /// A block of a 4-bit weight, or with <paramref name="rowIds"/> the rows it lists (row0 = 0, rows = their count); the
    /// scales (double-quantized or not) are decoded per block inside the kernel.
    /// </summary>
    internal static void FourBit(Nf4Weight w, long row0, long rows, long col0, long cols, Tensor output, DequantizeKernel kernel, Tensor? rowIds = null)
    {
        CheckBlock(w, row0, rows, col0, cols, output, rowIds);
        vlpeft_dequantize_4bit(Data(w.Packed), Data(w.Absmax), Data(w.AbsmaxCodes), Data(w.NestedCode), Data(w.NestedAbsmax), w.NestedBlockSizeUsed,
            w.Offset, Data(w.Code), w.BlockSizeUsed, w.InFeatures, row0, rows, Data(rowIds), col0, cols, Data(output), OutType(output.dtype), (int)kernel);
        GC.KeepAlive(w); GC.KeepAlive(output); GC.KeepAlive(rowIds);
    }

    /// <summary>A block (or listed rows) of an int8 weight from its values and row absolute maxima (each row scaled by absmax / 127).</summary>
    internal static void Int8(Int8Weight w, long row0, long rows, long col0, long cols, Tensor output, DequantizeKernel kernel, Tensor? rowIds = null)
    {
        CheckBlock(w, row0, rows, col0, cols, output, rowIds);
        vlpeft_dequantize_int8(Data(w.Values), Data(w.RowAbsmax), w.InFeatures, row0, rows, Data(rowIds), col0, cols, Data(output), OutType(output.dtype), (int)kernel);
        GC.KeepAlive(w); GC.KeepAlive(output); GC.KeepAlive(rowIds);
    }
}
