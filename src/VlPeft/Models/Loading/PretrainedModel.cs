using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Models.Loading;

/// <summary>Options for reading a HF checkpoint directory.</summary>
public sealed record PretrainedOptions
{
    /// <summary>Refuse missing or unexpected keys (default).</summary>
    public bool Strict { get; init; } = true;
    /// <summary>dtype of the base weights (e.g. BFloat16 for frozen parts); adapters attached later stay fp32.</summary>
    public ScalarType? DType { get; init; }
    public bool SkipVision { get; init; }
    public bool SkipLanguageModel { get; init; }
    /// <summary>
    /// model.quantize's value (nf4, int8, none, or a map of frozen parts to those; <see cref="QuantizationPlan"/>): the
    /// chosen linear weights are quantized as they are read, so loading peaks near the quantized model plus one tensor.
    /// </summary>
    public object? Quantize { get; init; }
    /// <summary>model.quantize_embeddings: the quantized parts' token tables are quantized too (<see cref="QuantizationPlan.Targets"/>).</summary>
    public bool QuantizeEmbeddings { get; init; }
}

/// <summary>
/// HF from_pretrained for every registered family: config.json (its model_type picks the family) +
/// model.safetensors (or a sharded index), copied name for name.
/// </summary>
public static class PretrainedModel
{
    public static VisionLanguageModel Load(string directory, PretrainedOptions? options = null)
    {
        options ??= new PretrainedOptions();
        if (!Directory.Exists(directory)) throw new BadInputException("model directory not found", directory);
        var build = new ModelBuildOptions { SkipVision = options.SkipVision, SkipLanguageModel = options.SkipLanguageModel };
        bool quantize = options.Quantize is not (null or Nn.Quantization.QuantizedWeight.None);
        VisionLanguageModel model;
        // Linear weights wait for the checkpoint when they are quantized or cast on the way: no full fp32 model first.
        using (quantize || options.DType is not null ? Nn.Linear.DeferWeightAllocation() : null) model = ModelFamilies.FromConfigFile(directory, build);
        var parts = quantize ? QuantizationPlan.Parse(options.Quantize, model, "model.quantize") : new Dictionary<string, string>();
        if (options.DType is ScalarType dtype) model.to(dtype);
        var skip = model.ParameterGroups
            .Where(g => (options.SkipVision && g.Name == "vision") || (options.SkipLanguageModel && g.Name == "language_model"))
            .SelectMany(g => g.Prefixes).Select(p => p + ".").ToList();
        var targets = QuantizationPlan.Targets(model, parts, options.QuantizeEmbeddings);
        CheckpointLoader.Load(model, directory, options.Strict, skip, ModelFamilies.Of(model).TiedAliases(model), targets.GetValueOrDefault);
        QuantizationPlan.Report(model, parts);
        return model;
    }

    /// <summary>A checkpoint directory's model with its processor (tokenizers, image preprocessing).</summary>
    public static (VisionLanguageModel Model, VisionLanguageProcessor Processor) LoadWithProcessor(string directory, PretrainedOptions? options = null)
    {
        var model = Load(directory, options);
        return (model, ModelFamilies.Of(model).LoadProcessor(model, directory));
    }

    /// <summary>
    /// Copies everything but the weights and config.json (tokenizer files, qformer_tokenizer/, …) from one
    /// checkpoint directory to another, so a derived checkpoint is self-contained.
    /// </summary>
    public static void CopyAuxiliaryFiles(string from, string to)
    {
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories)
                     .Where(f => !f.EndsWith(".safetensors") && !f.EndsWith(".index.json") && Path.GetFileName(f) != "config.json"))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }

    /// <summary>
    /// Writes a model as a HF checkpoint directory (config.json + model.safetensors). Quantized linear weights are written
    /// in bitsandbytes' layout (<see cref="BitsAndBytesWeights"/>) and config.json gets the matching quantization_config;
    /// quantized token tables are written dequantized, as Transformers' bitsandbytes loading reads tables in full precision.
    /// </summary>
    public static void Save(VisionLanguageModel model, string directory)
    {
        Directory.CreateDirectory(directory);
        using var scope = torch.NewDisposeScope();
        var held = QuantizationPlan.QuantizedModules(model).ToList();
        var quantized = held.Where(l => l.Layer is Nn.Linear).ToDictionary(l => l.Name, l => l.Layer.Quantized!);
        var tensors = model.named_parameters().Where(p => !(p.name.EndsWith(".weight") && quantized.ContainsKey(p.name[..^7])))
            .ToDictionary(p => p.name, p => (Tensor)p.parameter);
        foreach (var (module, weight) in quantized)
            foreach (var (key, value) in BitsAndBytesWeights.Tensors(module, weight)) tensors[key] = value;
        foreach (var (module, table) in held.Where(l => l.Layer is Nn.Embedding))
            tensors[module + ".weight"] = table.Quantized!.Dequantize(table.weight.dtype);
        Tensors.SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var formats = quantized.Values.Select(q => q.Format).Distinct().ToList();
        if (formats.Count > 1) throw new BadInputException($"one checkpoint holds one quantization format; this model mixes {string.Join(" and ", formats)}");
        if (formats.Count == 0)
        {
            AtomicFile.WriteAllText(Path.Combine(directory, "config.json"), model.ConfigJson());
            return;
        }
        var config = System.Text.Json.Nodes.JsonNode.Parse(model.ConfigJson())!.AsObject();
        config["quantization_config"] = formats[0] == Nn.Quantization.QuantizedWeight.Int8
            ? new System.Text.Json.Nodes.JsonObject { ["quant_method"] = "bitsandbytes", ["load_in_8bit"] = true }
            : new System.Text.Json.Nodes.JsonObject
            {
                ["quant_method"] = "bitsandbytes", ["load_in_4bit"] = true, ["bnb_4bit_quant_type"] = formats[0],
                ["bnb_4bit_use_double_quant"] = quantized.Values.OfType<Nn.Quantization.Nf4Weight>().All(w => w.DoubleQuant),
                ["bnb_4bit_compute_dtype"] = "float32",
            };
        AtomicFile.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
