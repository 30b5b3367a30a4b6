using System.Diagnostics;
using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Diagnostics;

/// <summary>What <c>vlpeft doctor</c> reports: can the native backend load, and how fast is it here.</summary>
public sealed record DoctorReport(
    [property: JsonPropertyName("torchsharp_version")] string TorchSharpVersion,
    [property: JsonPropertyName("libtorch_version")] string? LibTorchVersion,
    bool NativeLoaded,
    string? NativePath,
    string? NativeError,
    int Threads,
    bool CpuHasBf16,
    int MatmulSize,
    double? Fp32Gflops,
    double? Bf16Gflops,
    [property: JsonPropertyName("mpi_version")] string? MpiVersion = null,
    [property: JsonPropertyName("mpi_error")] string? MpiError = null,
    [property: JsonPropertyName("mpirun")] string? Mpirun = null,
    [property: JsonPropertyName("dequantize")] string? Dequantize = null)
{
    public static DoctorReport Collect(int matmulSize = 512)
    {
        string torchSharpVersion = typeof(torch).Assembly.GetName().Version?.ToString() ?? "unknown";
        var (mpiVersion, mpiError) = VlPeft.Distributed.Cluster.MpiLibrary();
        string? mpirun = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);
        var (path, error) = NativeLibraryCheck.TryLoad();
        bool cpuBf16 = CpuFlags().Contains("avx512_bf16");
        if (error != null)
            return new DoctorReport(torchSharpVersion, null, false, path, error, 0, cpuBf16, matmulSize, null, null, mpiVersion, mpiError, mpirun);
        return new DoctorReport(torchSharpVersion, torch.__version__, true, path, null, torch.get_num_threads(),
            cpuBf16, matmulSize, MatmulGflops(ScalarType.Float32, matmulSize), MatmulGflops(ScalarType.BFloat16, matmulSize), mpiVersion, mpiError, mpirun,
            VlPeft.Nn.Quantization.NativeDequantize.Describe());
    }

    /// <summary>Best of several square matmuls after a warm-up, in GFLOP/s (2·n³ flops each).</summary>
    public static double MatmulGflops(ScalarType dtype, int n, int repeats = 5)
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.randn(n, n).to(dtype);
        var b = torch.randn(n, n).to(dtype);
        torch.matmul(a, b).Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            var watch = Stopwatch.StartNew();
            torch.matmul(a, b).Dispose();
            best = Math.Min(best, watch.Elapsed.TotalSeconds);
        }
        return 2.0 * n * n * n / best / 1e9;
    }

    static string CpuFlags()
    {
        try
        {
            return File.Exists("/proc/cpuinfo")
                ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags")) ?? ""
                : "";
        }
        catch (IOException)
        {
            return "";
        }
    }
}
