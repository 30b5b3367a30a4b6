using System.Diagnostics;
using System.Text.Json.Nodes;
using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Bench;

/// <summary>
/// A LLaMA-7B-shaped block stack (hidden 4096, FFN 11008, 32 heads, vocabulary 32000; 4 layers by default) inside the
/// tiny InstructBLIP-Vicuna's vision tower and Q-Former, random bf16 weights written to safetensors once. Each storage
/// choice (bf16, int8, nf4 for the language model's linear weights, and int8/nf4 with its token table quantized too:
/// model.quantize_embeddings) is then loaded and trained in a fresh process: peak RSS after
/// loading (VmHWM), the language model's weight bytes, and the median LoRA step (llm-lora-all r = 8, one sequence of
/// 256 tokens through the language model, AdamW) with its peak RSS.
/// </summary>
static class QuantizedLoadBench
{
    public static int Run(string[] args)
    {
        if (args.Length >= 2 && args[0] == "child") return Child(args[1], args[2]);
        int layers = args.Length > 0 ? int.Parse(args[0]) : 4;
        string dir = Path.Combine(Path.GetTempPath(), $"vlpeft-bench-llama7b-{layers}");
        if (!File.Exists(Path.Combine(dir, "model.safetensors"))) Write(dir, layers);
        Console.WriteLine($"{layers} LLaMA-7B layers in {dir} ({new FileInfo(Path.Combine(dir, "model.safetensors")).Length / 1e9:F2} GB of bf16)");
        var rows = new List<(string Mode, JsonNode Result)>();
        foreach (var mode in new[] { "bf16", "int8", "nf4", "int8+table", "nf4+table" })
        {
            var info = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { "quantized-load", "child", dir, mode }) info.ArgumentList.Add(a);
            using var child = Process.Start(info)!;
            string line = child.StandardOutput.ReadToEnd().Trim().Split('\n')[^1];
            child.WaitForExit();
            rows.Add((mode, JsonNode.Parse(line)!));
        }
        var bf16 = rows[0].Result;
        Console.WriteLine($"{"base",-10}{"LM weights",14}{"× bf16",8}{"peak RSS load",16}{"× bf16",8}{"step",10}{"× bf16",8}{"peak RSS train",16}");
        foreach (var (mode, r) in rows)
            Console.WriteLine($"{mode,-10}{r["lm_bytes"]!.GetValue<double>() / 1e9,11:F2} GB{r["lm_bytes"]!.GetValue<double>() / bf16["lm_bytes"]!.GetValue<double>(),8:F2}" +
                $"{r["rss_load"]!.GetValue<double>() / 1e9,13:F2} GB{r["rss_load"]!.GetValue<double>() / bf16["rss_load"]!.GetValue<double>(),8:F2}" +
                $"{r["step_ms"]!.GetValue<double>(),7:F0} ms{r["step_ms"]!.GetValue<double>() / bf16["step_ms"]!.GetValue<double>(),8:F2}{r["rss_train"]!.GetValue<double>() / 1e9,13:F2} GB");
        return 0;
    }

    static JsonObject Config(int layers)
    {
        var config = JsonNode.Parse(ModelPresets.Json("tiny-instructblip-vicuna"))!.AsObject();
        var text = config["text_config"]!.AsObject();
        text["vocab_size"] = 32000;
        text["hidden_size"] = 4096;
        text["intermediate_size"] = 11008;
        text["num_attention_heads"] = 32;
        text["num_hidden_layers"] = layers;
        text["max_position_embeddings"] = 2048;
        return config;
    }

    static void Write(string dir, int layers)
    {
        Directory.CreateDirectory(dir);
        string config = Config(layers).ToJsonString();
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        using var meta = ModelFamilies.FromConfigFile(dir, new ModelBuildOptions { Device = torch.META });
        torch.manual_seed(0);
        var tensors = meta.named_parameters().ToDictionary(p => p.name, p => (torch.randn(p.parameter.shape) * 0.02).to(ScalarType.BFloat16));
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        foreach (var t in tensors.Values) t.Dispose();
    }

    static int Child(string dir, string mode)
    {
        VlPeft.Runtime.NativeAllocator.KeepFreedBlocksForReuse();   // as the CLI does
        string format = mode.Split('+')[0];
        var options = new PretrainedOptions
        {
            DType = ScalarType.BFloat16, Quantize = format == "bf16" ? null : new Dictionary<object, object> { ["language_model"] = format },
            QuantizeEmbeddings = mode.EndsWith("+table", StringComparison.Ordinal),
        };
        using var model = PretrainedModel.Load(dir, options);
        long rssLoad = ProcessMemory.PeakRss();
        var lm = model.named_modules().Single(m => m.name == "language_model").module;
        var quantized = QuantizationPlan.QuantizedModules(lm).ToDictionary(l => l.Name + ".weight", l => l.Layer.Quantized!);
        long lmBytes = quantized.Values.Sum(q => q.Bytes)   // codes and scales, not the zero-stride placeholders
            + lm.named_parameters().Where(p => !quantized.ContainsKey(p.name)).Sum(p => p.parameter.NumberOfElements * p.parameter.ElementSize);

        Console.Error.WriteLine($"{mode} loaded: RSS {ProcessMemory.CurrentRss() / 1e9:F2} GB, peak {rssLoad / 1e9:F2} GB, after malloc_trim {Trimmed() / 1e9:F2} GB");
        var plan = ModelFamilies.Of(model).PeftPreset("llm-lora-all", model, 8);
        var peft = plan.Apply(model)!;
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        using var optimizer = VlPeft.Training.OptimizerFactory.AdamW(trainable, 1e-4, 0.0);
        var language = ((VlPeft.Models.Multimodal.BlipForConditionalGeneration)model).LanguageModel;
        torch.manual_seed(1);
        using var embeds = (torch.randn(1, 256, 4096) * 0.02).to(ScalarType.BFloat16);
        using var mask = torch.ones(1, 256, dtype: ScalarType.Int64);
        model.train();
        var times = new List<double>();
        for (int i = 0; i < 4; i++)
        {
            using var scope = torch.NewDisposeScope();
            var watch = Stopwatch.StartNew();
            var loss = language.Logits(embeds, mask, null).to(ScalarType.Float32).pow(2).mean();
            loss.backward();
            optimizer.step();
            optimizer.zero_grad();
            if (i > 0) times.Add(watch.Elapsed.TotalMilliseconds);
            Console.Error.WriteLine($"{mode} step {i}: {watch.Elapsed.TotalMilliseconds:F0} ms, RSS {ProcessMemory.CurrentRss() / 1e9:F2} GB, peak {ProcessMemory.PeakRss() / 1e9:F2} GB, after malloc_trim {Trimmed() / 1e9:F2} GB");
        }
        GC.KeepAlive(peft);
        Console.WriteLine(new JsonObject
        {
            ["mode"] = mode, ["lm_bytes"] = lmBytes, ["rss_load"] = rssLoad, ["step_ms"] = times.OrderBy(t => t).ElementAt(times.Count / 2),
            ["rss_train"] = ProcessMemory.PeakRss(),
        }.ToJsonString());
        return 0;
    }

    /// <summary>RSS once glibc has returned the free memory it keeps (the child raised its thresholds): what is live.</summary>
    static long Trimmed()
    {
        VlPeft.Runtime.NativeAllocator.ReleaseFreeMemory();
        return ProcessMemory.CurrentRss();
    }
}
