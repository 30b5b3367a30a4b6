using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;
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
}

/// <summary>HF from_pretrained for the BLIP-2 family: config.json + model.safetensors (or a sharded index).</summary>
public static class PretrainedModel
{
    public static BlipForConditionalGeneration Load(string directory, PretrainedOptions? options = null)
    {
        options ??= new PretrainedOptions();
        if (!Directory.Exists(directory)) throw new BadInputException("model directory not found", directory);
        var config = MultimodalConfig.Load(directory);
        var model = VisionLanguageModels.Create(config, new ModelBuildOptions { SkipVision = options.SkipVision, SkipLanguageModel = options.SkipLanguageModel });
        if (options.DType is ScalarType dtype) model.to(dtype);
        var skip = new List<string>();
        if (options.SkipVision) skip.Add("vision_model.");
        if (options.SkipLanguageModel) skip.Add("language_model.");
        CheckpointLoader.Load(model, directory, options.Strict, skip, TiedAliases(config));
        return model;
    }

    /// <summary>Checkpoint keys that are copies of another tensor (HF ties them; files may or may not hold them).</summary>
    public static IEnumerable<string> TiedAliases(MultimodalConfig config) => config.Text.ModelType switch
    {
        "t5" => new[] { "language_model.encoder.embed_tokens.weight", "language_model.decoder.embed_tokens.weight" },
        "opt" => new[] { "language_model.lm_head.weight" },
        _ => Array.Empty<string>(),
    };

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

    /// <summary>Writes a model as a HF checkpoint directory (config.json + model.safetensors).</summary>
    public static void Save(BlipForConditionalGeneration model, string directory)
    {
        Directory.CreateDirectory(directory);
        var tensors = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        Tensors.SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        string config = Path.Combine(directory, "config.json");
        AtomicFile.WriteAllText(config, model.Config.ToJson());
    }
}
