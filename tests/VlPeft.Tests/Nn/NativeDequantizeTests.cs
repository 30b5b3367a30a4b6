using TorchSharp;
using VlPeft.Nn.Quantization;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Nn;

/// <summary>
/// The native dequantization kernels (every instruction set this CPU runs) against the libtorch path, whose values the
/// QuantizationTests check against the formulas; and the tiled quantized matmuls against matmuls with the whole
/// dequantized weight.
/// </summary>
public class NativeDequantizeTests
{
    static IEnumerable<DequantizeKernel> NativeKernels()
    {
        for (var k = DequantizeKernel.Scalar; k <= NativeDequantize.Best; k++) yield return k;
    }

    static QuantizedWeight Make(string format, long rows, long cols, bool doubleQuant, int seed)
    {
        torch.manual_seed(seed);
        using var w = torch.randn(rows, cols) * 0.05;
        return QuantizedWeight.Create(format, w, doubleQuant);
    }

    [Fact]
    public void The_build_provides_the_native_kernels_on_linux_x64_with_gxx()
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64 || GxxOnPath() is null)
            return;   // the build warned and the libtorch path serves
        Assert.NotEqual(DequantizeKernel.LibTorch, NativeDequantize.Best);
        Assert.StartsWith("native kernels, ", NativeDequantize.Describe());
    }

    static string? GxxOnPath() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "g++")).FirstOrDefault(File.Exists);

    [Fact]
    public void The_kernels_read_and_write_only_their_buffers_and_match_a_scalar_reference_under_sanitizers()
    {
        // Nn/Native/dequantize_checked.cpp: random blocks over exact-size heap buffers, built with the kernels'
        // source under AddressSanitizer and UndefinedBehaviorSanitizer.
        if (GxxOnPath() is not string gxx || !OperatingSystem.IsLinux()) return;
        using var dir = new TempDirectory();
        string binary = Path.Combine(dir.Path, "dequantize_checked");
        var (code, output) = Run(gxx, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
            "-ffp-contract=off", "-fopenmp", "-std=c++17", RepoPath.Of("tests", "VlPeft.Tests", "Nn", "Native", "dequantize_checked.cpp"),
            RepoPath.Of("src", "VlPeft", "Native", "dequantize.cpp"), "-o", binary);
        Assert.True(code == 0, output);
        (code, output) = Run(binary);
        Assert.True(code == 0, output);
        Assert.StartsWith("ok: ", output);
    }

    static (int Code, string Output) Run(string program, params string[] args)
    {
        var info = new System.Diagnostics.ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["ASAN_OPTIONS"] = "detect_leaks=0";
        using var process = System.Diagnostics.Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }

    [Theory]
    [InlineData("nf4", true)]
    [InlineData("nf4", false)]
    [InlineData("int8", false)]
    public void Every_native_kernel_gives_the_bits_of_the_libtorch_path(string format, bool doubleQuant)
    {
        // 37 × 133: an odd value count (a half-filled last byte, a partial last block) and rows that start mid-block;
        // 512 × 2048: a million products, so that bf16's round-to-nearest-even meets its rare bit patterns (ties, carries).
        foreach (var (rows, cols) in new[] { (37L, 133L), (512L, 2048L) })
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var q = Make(format, rows, cols, doubleQuant, seed: 11);
            using var expected = q.Dequantize(dtype, DequantizeKernel.LibTorch);
            foreach (var kernel in NativeKernels())
            {
                using var actual = q.Dequantize(dtype, kernel);
                Assert.Equal(dtype, actual.dtype);
                Assert.True(expected.eq(actual).all().item<bool>(), $"{format} {dtype} {kernel}: max diff {(expected.to(ScalarType.Float64) - actual.to(ScalarType.Float64)).abs().max().item<double>()}");
            }
        }
    }

    [Theory]
    [InlineData("nf4")]
    [InlineData("int8")]
    public void A_block_of_rows_and_columns_is_that_slice_of_the_weight(string format)
    {
        using var q = Make(format, 29, 200, doubleQuant: true, seed: 12);
        using var whole = q.Dequantize(ScalarType.Float32, DequantizeKernel.LibTorch);
        // Odd first columns (a value in a byte's low nibble), blocks entered midway, a lone column, the last column.
        foreach (var (row0, rows, col0, cols) in new[] { (0L, 29L, 0L, 200L), (3, 7, 1, 77), (10, 19, 64, 64), (0, 1, 199, 1), (28, 1, 5, 195), (5, 11, 63, 130) })
            foreach (var kernel in NativeKernels())
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
                {
                    using var block = torch.empty(rows, cols, dtype: dtype);
                    q.DequantizeBlock(row0, rows, col0, cols, block, kernel);
                    using var expected = whole.narrow(0, row0, rows).narrow(1, col0, cols).to(dtype);
                    Assert.True(expected.eq(block).all().item<bool>(), $"{format} {kernel} {dtype} rows {row0}+{rows} cols {col0}+{cols}");
                }
    }

    [Fact]
    public void A_block_outside_the_weight_or_a_wrong_output_is_refused_before_native_code_runs()
    {
        if (NativeDequantize.Best == DequantizeKernel.LibTorch) return;
        using var q = Make("nf4", 8, 64, doubleQuant: true, seed: 15);
        using var output = torch.empty(2, 64);
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DequantizeBlock(7, 2, 0, 64, output, NativeDequantize.Best));
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DequantizeBlock(0, 2, 1, 64, output, NativeDequantize.Best));
        using var wrongShape = torch.empty(2, 63);
        Assert.Throws<ArgumentException>(() => q.DequantizeBlock(0, 2, 0, 64, wrongShape, NativeDequantize.Best));
        using var strided = torch.empty(64, 2).t();
        Assert.Throws<ArgumentException>(() => q.DequantizeBlock(0, 2, 0, 64, strided, NativeDequantize.Best));
        // Listed rows: each inside the weight, int64, as many as the output's rows.
        foreach (var ids in new[] { torch.tensor(new long[] { 1, 8 }), torch.tensor(new long[] { -1, 0 }), torch.tensor(new[] { 1, 2 }), torch.tensor(new long[] { 1, 2, 3 }) })
            using (ids) Assert.Throws<ArgumentException>(() => q.DequantizeBlock(0, 2, 0, 64, output, NativeDequantize.Best, ids));
        using var packed = torch.zeros(256, dtype: ScalarType.Int16);
        Assert.Throws<BadInputException>(() => new Nf4Weight(8, 64, packed, torch.tensor(Nf4Weight.Levels), 64, torch.ones(8)));
    }

    [Theory]
    [InlineData("nf4", ScalarType.Float32, 1e-5)]
    [InlineData("int8", ScalarType.Float32, 1e-5)]
    [InlineData("nf4", ScalarType.BFloat16, 1e-2)]
    public void Tiled_forward_and_input_gradient_equal_matmuls_with_the_whole_dequantized_weight(string format, ScalarType dtype, double tolerance)
    {
        using var q = Make(format, 20, 600, doubleQuant: true, seed: 13);
        using var dense = q.Dequantize(dtype);
        torch.manual_seed(14);
        using var x = torch.randn(6, 600).to(dtype);
        Assert.True(QuantizedLinearFunction.Tiled(q, x, out _), "CPU activations in fp32/bf16 take the tiled native path");
        using (var half = x.to(ScalarType.Float16)) Assert.False(QuantizedLinearFunction.Tiled(q, half, out _));
        using var dy = torch.randn(6, 20).to(dtype);
        using var bias = torch.randn(20).to(dtype);
        // 300 values a tile in groups of one row: forward decodes one row at a time (20 tiles). 1300 for dx: 64 columns
        // at a time (9 tiles of 64, one of 24), rows of 600 values starting mid-block.
        using var y = QuantizedLinearFunction.Forward(x, q, bias, tileValues: 300, rowGroup: 1);
        using var yNoBias = QuantizedLinearFunction.Forward(x, q, null, tileValues: 300, rowGroup: 1);
        using var dx = QuantizedLinearFunction.InputGradient(dy, q, tileValues: 1300);
        TensorAssert.Close(torch.addmm(bias, x, dense.t(), 1, 1), y, tolerance);
        TensorAssert.Close(torch.matmul(x, dense.t()), yNoBias, tolerance);
        // Groups of 3 rows, 1800 values a tile: 7 tiles of 3 rows, the last of 2.
        using (var grouped = QuantizedLinearFunction.Forward(x, q, bias, tileValues: 1800, rowGroup: 3)) TensorAssert.Close(y, grouped, tolerance);
        TensorAssert.Close(torch.matmul(dy, dense), dx, tolerance);
        // fp16 activations take the whole-weight libtorch path, to the same values.
        using (var half = QuantizedLinearFunction.Forward(x.to(ScalarType.Float16), q, bias.to(ScalarType.Float16)))
            TensorAssert.Close(torch.addmm(bias, x, dense.t(), 1, 1).to(ScalarType.Float16), half, 2e-2);
        // One tile for the whole weight (the default size) gives the same values.
        using var yOneTile = QuantizedLinearFunction.Forward(x, q, bias);
        TensorAssert.Close(y, yOneTile, tolerance);
    }
}
