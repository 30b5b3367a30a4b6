using System.Text.RegularExpressions;
using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Peft;
using VlPeft.Peft.Bottleneck;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Models.Loading;

/// <summary>
/// LaVIN's released adapter checkpoints (luogen1996/LaVIN: <c>torch.save({"model": trained tensors, …})</c>) as a VlPeft
/// adapter folder: <c>layers.N.adapter_attn/adapter_mlp</c> (LLaMA), <c>backbone.visual.transformer.resblocks.N.adapter_attn/
/// adapter_mlp</c> (CLIP), <c>adapter_proj</c> (neck) and <c>adapter_modality_embedding</c> map onto the LaVIN-style model's
/// sites and modules; Conv1d weights lose their kernel axis.
/// </summary>
public static class LavinCheckpoint
{
    static readonly (Regex Lavin, string VlPeft)[] names =
    {
        (new(@"^layers\.(\d+)\.adapter_attn\."), "language_model.model.layers.$1.adapter_before_attention."),
        (new(@"^layers\.(\d+)\.adapter_mlp\."), "language_model.model.layers.$1.adapter_before_ffn."),
        (new(@"^backbone\.visual\.transformer\.resblocks\.(\d+)\.adapter_attn\."), "vision_model.encoder.layers.$1.adapter_before_attention."),
        (new(@"^backbone\.visual\.transformer\.resblocks\.(\d+)\.adapter_mlp\."), "vision_model.encoder.layers.$1.adapter_before_ffn."),
        (new(@"^adapter_proj\."), "adapter_proj."),
        (new(@"^adapter_modality_embedding\."), "adapter_modality_embedding."),
    };

    /// <summary>The VlPeft path of a LaVIN tensor name, or null for tensors that are not LaVIN's trained parts.</summary>
    public static string? VlPeftName(string lavinName)
    {
        foreach (var (lavin, vlpeft) in names)
            if (lavin.IsMatch(lavinName)) return lavin.Replace(lavinName, vlpeft);
        return null;
    }

    /// <summary>
    /// Writes <paramref name="outDirectory"/> as a BOTTLENECK adapter (adapter_config.json + adapter_model.safetensors)
    /// from a LaVIN checkpoint. The router temperature is not stored in LaVIN's files (10 for 7B, 5 for 13B); with
    /// <paramref name="lavinQuirk"/> the ViT routers keep LaVIN's image-0 behaviour, which reproduces its numbers.
    /// </summary>
    public static BottleneckConfig Convert(string checkpoint, string outDirectory, double temperature, bool lavinQuirk)
    {
        var tensors = PthFile.ReadTensors(checkpoint);
        var saved = new Dictionary<string, Tensor>();
        var sites = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (key, tensor) in tensors)
        {
            string name = key.StartsWith("model.", StringComparison.Ordinal) ? key["model.".Length..] : key;
            if (VlPeftName(name) is not string mapped) continue;
            var value = tensor.dim() == 3 && tensor.shape[2] == 1 ? tensor.squeeze(2) : tensor;         // Conv1d [out, in, 1]
            saved[PeftFiles.Prefix + mapped] = value.to(ScalarType.Float32);
            var site = Regex.Match(mapped, @"^(.*\.adapter_before_(attention|ffn))\.");
            if (site.Success) sites.Add(site.Groups[1].Value);
        }
        if (sites.Count == 0) throw new BadInputException("no LaVIN adapter tensors (…adapter_attn.conv_A.weight) in the checkpoint", checkpoint);
        // Site adapters only: the neck (adapter_proj) also has conv_A/conv_B, of other shapes.
        Tensor Saved(string suffix) => saved.FirstOrDefault(kv => kv.Key.Contains(".adapter_before_", StringComparison.Ordinal) && kv.Key.EndsWith(suffix, StringComparison.Ordinal)).Value
            ?? throw new BadInputException($"the checkpoint has adapters but no '…{suffix}'", checkpoint);
        long dim = Saved(".conv_A.weight").shape[0];
        long perGroup = Saved(".conv_B.weight").shape[1];
        var config = new BottleneckConfig
        {
            AdapterDim = (int)dim, Groups = (int)(dim / perGroup), Scale = 1, Dropout = 0.1, Temperature = temperature,
            Router = saved.Keys.Any(k => k.Contains(".adapter_before_", StringComparison.Ordinal) && k.EndsWith(".conv_D.weight", StringComparison.Ordinal)),
            LavinRouterQuirkModules = lavinQuirk ? new[] { "vision_model" } : Array.Empty<string>(),
            TargetModules = ModuleSelector.FromNames(sites.ToArray()), TaskType = "CAUSAL_LM", InferenceMode = true,
        };
        if (!config.Router) config = config with { LavinRouterQuirkModules = Array.Empty<string>() };
        config.Validate();
        Directory.CreateDirectory(outDirectory);
        SafetensorsWriter.Write(Path.Combine(outDirectory, PeftFiles.WeightsFileName), saved, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(outDirectory, PeftFiles.ConfigFileName), config.ToJsonText());
        return config;
    }

    /// <summary>
    /// Assembles a LaVIN-style base checkpoint directory from a HF LLaMA directory (e.g. <see cref="MetaLlamaFormat.Convert"/>'s
    /// output) and a HF CLIP vision tower (CLIPVisionModel or CLIPModel files: only <c>vision_model.*</c> is taken), with a
    /// freshly initialised neck and modality token (seeded), as LaVIN starts. Every tensor must match the preset's shape.
    /// Holds the model once in memory (7B in bf16: about 14 GB).
    /// </summary>
    public static void AssembleBase(string llamaDirectory, string clipDirectory, string preset, string outDirectory, int seed = 0)
    {
        var config = LavinConfig.Parse(ModelPresets.Json(preset), $"preset {preset}");
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var llama = TensorCheckpoint.Open(llamaDirectory))
            foreach (var name in llama.Entries.Select(e => e.Name).Where(n => n.StartsWith("model.", StringComparison.Ordinal) || n.StartsWith("lm_head.", StringComparison.Ordinal)))
                if (!name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)) tensors["language_model." + name] = llama.ReadTensor(name);
        using (var clip = TensorCheckpoint.Open(clipDirectory))
            foreach (var name in clip.Entries.Select(e => e.Name).Where(n => n.StartsWith("vision_model.", StringComparison.Ordinal) && !n.EndsWith("position_ids", StringComparison.Ordinal)))
                tensors[name] = clip.ReadTensor(name);
        torch.manual_seed(seed);
        using (var fresh = new Multimodal.LavinForConditionalGeneration(config, new ModelBuildOptions { SkipVision = true, SkipLanguageModel = true }))
            foreach (var (name, p) in fresh.named_parameters()) tensors[name] = p.detach();
        using (var expected = new Multimodal.LavinForConditionalGeneration(config, new ModelBuildOptions { Device = torch.META }))
        {
            var want = expected.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
            if (want.Keys.FirstOrDefault(k => !tensors.ContainsKey(k)) is string missing)
                throw new BadInputException($"the inputs lack '{missing}' that preset {preset} needs (LLaMA from {llamaDirectory}, CLIP from {clipDirectory})");
            if (want.FirstOrDefault(kv => !tensors[kv.Key].shape.SequenceEqual(kv.Value)) is { Key: not null } bad)
                throw new BadInputException($"'{bad.Key}' is [{string.Join(", ", tensors[bad.Key].shape)}] but preset {preset} needs [{string.Join(", ", bad.Value)}]");
            foreach (var extra in tensors.Keys.Where(k => !want.ContainsKey(k)).ToList()) tensors.Remove(extra);
        }
        Directory.CreateDirectory(outDirectory);
        SafetensorsWriter.Write(Path.Combine(outDirectory, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(outDirectory, "config.json"), config.ToJson());
        foreach (var name in new[] { "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json" })
            if (File.Exists(Path.Combine(llamaDirectory, name))) File.Copy(Path.Combine(llamaDirectory, name), Path.Combine(outDirectory, name), overwrite: true);
    }
}
