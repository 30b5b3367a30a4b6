using System.CommandLine;
using System.Globalization;
using TorchSharp;
using VlPeft.Experiments;
using VlPeft.Models;
using VlPeft.Models.Loading;
using VlPeft.Peft;
using static TorchSharp.torch;

namespace VlPeft.Cli.Commands;

static class MergeCommand
{
    public static Command Create(CliConsole console)
    {
        var model = SharedOptions.Model("Base HF checkpoint directory");
        var adapter = SharedOptions.RequiredAdapter();
        var output = new Option<string>("--out") { Description = "Directory for the merged checkpoint", Required = true };
        var quantize = new Option<string?>("--quantize")
        {
            Description = "The quantization the adapter was trained over (nf4, int8): the base is quantized the same way and the adapter merged into the dequantized weights",
        };
        var quantizeEmbeddings = SharedOptions.QuantizeEmbeddings();
        var requantize = new Option<bool>("--requantize") { Description = "Quantize the merged weights again (rounds them: outputs move away from the adapter's)" };
        var dtype = new Option<string>("--dtype") { Description = "Dtype of the written weights: f32 or bf16", DefaultValueFactory = _ => "f32" };
        dtype.AcceptOnlyFromAmong("f32", "bf16");
        var verify = new Option<bool>("--verify") { Description = "Run the same inputs through adapter + base and through the merged model; fail when the logits differ by more than --tolerance" };
        var tolerance = new Option<double>("--tolerance") { Description = "Largest allowed |Δ logit| for --verify, relative to max(1, max |logit|)", DefaultValueFactory = _ => 1e-3 };
        var command = new Command("merge", "Fold an adapter into its base model and write a plain HF-style checkpoint")
        {
            model, adapter, output, quantize, quantizeEmbeddings, requantize, dtype, verify, tolerance,
        };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            string baseDir = parse.GetValue(model)!, outDir = parse.GetValue(output)!;
            if (parse.GetValue(requantize) && parse.GetValue(quantize) is null) throw new BadInputException("--requantize needs --quantize (the format to quantize to)");
            using var loaded = PretrainedModel.Load(baseDir, new PretrainedOptions { Quantize = parse.GetValue(quantize), QuantizeEmbeddings = parse.GetValue(quantizeEmbeddings) });
            // Tokenizers only for --verify: a base without them still merges.
            var processor = parse.GetValue(verify) ? ModelFamilies.Of(loaded).LoadProcessor(loaded, baseDir) : null;
            var quantizedLayers = QuantizationPlan.QuantizedModules(loaded).Select(l => (l.Name, l.Layer, l.Layer.Quantized!.Format)).ToList();
            var peft = PeftFiles.LoadAll(loaded, parse.GetValue(adapter)!);
            using var before = processor is null ? null : VerificationLogits(loaded, processor);
            peft.MergeAndUnload(safe: true);   // a quantized layer is dequantized first: the merge adds to the weights training saw
            var merged = quantizedLayers.Where(l => l.Layer.Quantized is null).ToList();
            if (parse.GetValue(requantize))
            {
                foreach (var (_, layer, format) in merged) layer.Quantize(format);
                if (merged.Count > 0) console.Error.WriteLine($"warning: {merged.Count} merged layers quantized again: their merged weights are rounded to {parse.GetValue(quantize)}, so the model's outputs differ from the adapter's (--verify measures by how much)");
            }
            else
                foreach (var (_, layer, _) in quantizedLayers) layer.Dequantize();   // the dequantized values, written in full precision
            if (parse.GetValue(dtype) == "bf16") loaded.to(ScalarType.BFloat16);   // quantized layers keep their codes
            if (before is not null)
            {
                using var after = VerificationLogits(loaded, processor!);
                using var difference = (after.to(ScalarType.Float32) - before.to(ScalarType.Float32)).abs();
                double max = difference.max().item<float>(), mean = difference.mean().item<float>();
                double scale = Math.Max(1, before.abs().max().to(ScalarType.Float32).item<float>()), limit = parse.GetValue(tolerance) * scale;
                string I(double v) => v.ToString("G3", CultureInfo.InvariantCulture);
                console.Out.WriteLine($"verify: |logits(adapter + base) − logits(merged)| max {I(max)}, mean {I(mean)} over {before.NumberOfElements} logits (limit {I(limit)})");
                if (!(max <= limit))
                    throw new BadInputException($"the merged model's logits differ from the adapter's by up to {I(max)} (limit {I(limit)}); nothing was written. " +
                        "A larger difference than rounding means the merge does not reproduce the adapter (--requantize or --dtype bf16 add their own rounding; raise --tolerance to accept it)");
            }
            PretrainedModel.Save(loaded, outDir);
            PretrainedModel.CopyAuxiliaryFiles(baseDir, outDir); // tokenizer files travel with the weights
            console.Out.WriteLine($"merged {parse.GetValue(adapter)} into {outDir}");
            return CliApp.Success;
        }));
        return command;
    }

    /// <summary>Logits of two fixed examples (a blank image, a seeded noise image) with a fixed instruction and target.</summary>
    static Tensor VerificationLogits(VisionLanguageModel model, VisionLanguageProcessor processor)
    {
        model.eval();
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        string noise = Path.Combine(Path.GetTempPath(), $"vlpeft-verify-{Environment.ProcessId}.png");
        try
        {
            VerificationImage(noise);
            var batch = processor.TrainingBatch(new[]
            {
                new TextExample(null, "Question: What is in the picture? Answer:", "a small red square"),
                new TextExample(noise, "Describe the image in detail.", "a pattern of coloured dots"),
            });
            return model.call(batch).Logits.detach().clone().MoveToOuterDisposeScope();
        }
        finally
        {
            File.Delete(noise);
        }
    }

    static void VerificationImage(string path)
    {
        var random = new Random(0);
        var pixels = new byte[64 * 64 * 3];
        random.NextBytes(pixels);
        Imaging.PngWriter.Write(path, 64, 64, pixels);
    }
}
