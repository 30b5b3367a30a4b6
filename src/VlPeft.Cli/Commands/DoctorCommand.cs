using System.CommandLine;
using System.Text.Json;
using VlPeft.Diagnostics;

namespace VlPeft.Cli.Commands;

static class DoctorCommand
{
    public static Command Create(CliConsole console)
    {
        var json = new Option<bool>("--json") { Description = "Print the report as JSON" };
        var size = new Option<int>("--size") { Description = "Matmul size for the throughput probe", DefaultValueFactory = _ => 512 };
        var command = new Command("doctor", "Check that the native backend loads and measure matmul throughput") { json, size };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var report = DoctorReport.Collect(parse.GetValue(size));
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(report, CliJson.Options));
            else
                PrintText(console.Out, report);
            return report.NativeLoaded ? CliApp.Success : CliApp.InternalFailure;
        }));
        return command;
    }

    static void PrintText(TextWriter o, DoctorReport r)
    {
        o.WriteLine($"TorchSharp        {r.TorchSharpVersion}");
        o.WriteLine($"libtorch          {r.LibTorchVersion ?? "-"}");
        o.WriteLine($"native library    {(r.NativeLoaded ? "loaded" : "FAILED")} ({r.NativePath ?? "not found"})");
        if (r.NativeError != null) o.WriteLine($"loader error      {r.NativeError}");
        o.WriteLine($"MPI               {r.MpiVersion ?? "not available: " + r.MpiError}{(r.MpiVersion is null ? "" : r.Mpirun is null ? " (no mpirun on PATH)" : $" (mpirun: {r.Mpirun})")}");
        if (!r.NativeLoaded) return;
        o.WriteLine($"threads           {r.Threads}");
        o.WriteLine($"cpu avx512_bf16   {(r.CpuHasBf16 ? "yes" : "no")}");
        o.WriteLine($"dequantize        {r.Dequantize}");
        o.WriteLine($"matmul {r.MatmulSize}x{r.MatmulSize}  fp32 {r.Fp32Gflops:F1} GFLOP/s, bf16 {r.Bf16Gflops:F1} GFLOP/s");
    }
}
