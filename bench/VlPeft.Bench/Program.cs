using VlPeft.Bench;

// Benchmarks: `dotnet run -c Release --project bench/VlPeft.Bench -- <name> [options]`.
var benches = new Dictionary<string, Func<string[], int>>
{
    ["safetensors-load"] = SafetensorsLoadBench.Run,
    ["lora-linear"] = LoraLinearBench.Run,
    ["params"] = ParamsBench.Run,
    ["demo-throughput"] = DemoThroughputBench.Run,
    ["strided-linear"] = StridedLinearBench.Run,
    ["qformer-step"] = QFormerStepBench.Run,
    ["quantized-load"] = QuantizedLoadBench.Run,
    ["dequantize"] = DequantizeBench.Run,
};
if (args.Length == 0 || !benches.TryGetValue(args[0], out var bench))
{
    Console.Error.WriteLine($"usage: VlPeft.Bench <{string.Join("|", benches.Keys)}> [options]");
    return 2;
}
return bench(args[1..]);
