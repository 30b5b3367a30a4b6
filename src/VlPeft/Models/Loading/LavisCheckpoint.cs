using System.Text.RegularExpressions;
using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Models.Loading;

/// <summary>
/// LAVIS checkpoints (BLIP-2 / InstructBLIP, and InstructBLIP_PEFT's fine-tuned ones: <c>torch.save({"model": state_dict, …})</c>)
/// under HF names (models.md §1): <c>visual_encoder.*</c> (EVA ViT) → <c>vision_model.*</c> with q_bias/v_bias fused into
/// qkv.bias = [q_bias, 0, v_bias]; <c>ln_vision</c> → <c>vision_model.post_layernorm</c>; <c>Qformer.bert.*</c> → <c>qformer.*</c>
/// (<c>attention.self</c> → <c>attention.attention</c>); <c>t5_proj</c>/<c>llm_proj</c> → <c>language_projection</c>;
/// <c>t5_model</c>/<c>llm_model</c> → <c>language_model</c>. The Q-Former's MLM head (<c>Qformer.cls.*</c>) and buffers are dropped.
/// LAVIS saves only the parameters a run trained, so a fine-tuned checkpoint is laid over a full HF base.
/// </summary>
public static class LavisCheckpoint
{
    static readonly (Regex Pattern, string Replacement)[] Renames =
    {
        (new(@"^visual_encoder\.cls_token$"), "vision_model.embeddings.class_embedding"),
        (new(@"^visual_encoder\.pos_embed$"), "vision_model.embeddings.position_embedding"),
        (new(@"^visual_encoder\.patch_embed\.proj\."), "vision_model.embeddings.patch_embedding."),
        (new(@"^visual_encoder\.blocks\.(\d+)\.norm1\."), "vision_model.encoder.layers.$1.layer_norm1."),
        (new(@"^visual_encoder\.blocks\.(\d+)\.norm2\."), "vision_model.encoder.layers.$1.layer_norm2."),
        (new(@"^visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight$"), "vision_model.encoder.layers.$1.self_attn.qkv.weight"),
        (new(@"^visual_encoder\.blocks\.(\d+)\.attn\.proj\."), "vision_model.encoder.layers.$1.self_attn.projection."),
        (new(@"^visual_encoder\.blocks\.(\d+)\.mlp\."), "vision_model.encoder.layers.$1.mlp."),
        (new(@"^ln_vision\."), "vision_model.post_layernorm."),
        (new(@"^Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\."), "qformer.encoder.layer.$1.$2.attention."),
        (new(@"^Qformer\.bert\."), "qformer."),
        (new(@"^(t5_proj|llm_proj)\."), "language_projection."),
        (new(@"^(t5_model|llm_model)\."), "language_model."),
        (new(@"^query_tokens$"), "query_tokens"),
    };

    /// <summary>The HF name of a LAVIS key; null for what a model does not hold (MLM head, buffers, q/v biases fused separately).</summary>
    public static string? HfName(string lavis, bool instructBlip)
    {
        if (lavis.StartsWith("Qformer.cls.", StringComparison.Ordinal) || lavis.EndsWith("position_ids", StringComparison.Ordinal)
            || Regex.IsMatch(lavis, @"\.attn\.(q_bias|v_bias)$")) return null;
        // BLIP-2's Q-Former normalises the queries in qformer.layernorm; InstructBLIP's embeddings own it.
        if (lavis.StartsWith("Qformer.bert.embeddings.LayerNorm.", StringComparison.Ordinal))
            return (instructBlip ? "qformer.embeddings.layernorm." : "qformer.layernorm.") + lavis["Qformer.bert.embeddings.LayerNorm.".Length..];
        foreach (var (pattern, replacement) in Renames)
            if (pattern.IsMatch(lavis)) return pattern.Replace(lavis, replacement, 1);
        return null;
    }

    /// <summary>A LAVIS state dict (keys without the "model." wrapper) under HF names, with the EVA qkv biases fused.</summary>
    public static Dictionary<string, Tensor> ToHf(IReadOnlyDictionary<string, Tensor> lavis, bool instructBlip, string file)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, value) in lavis)
            if (HfName(name, instructBlip) is string hf) result[hf] = value;
        foreach (var q in lavis.Keys.Where(k => k.EndsWith(".attn.q_bias", StringComparison.Ordinal)))
        {
            string prefix = q[..^"q_bias".Length];
            var v = lavis.GetValueOrDefault(prefix + "v_bias") ?? throw new BadInputException($"'{q}' has no matching '{prefix}v_bias'", file);
            int layer = int.Parse(Regex.Match(q, @"blocks\.(\d+)\.").Groups[1].Value);
            result[$"vision_model.encoder.layers.{layer}.self_attn.qkv.bias"] = torch.cat(new[] { lavis[q], torch.zeros_like(lavis[q]), v });
        }
        return result;
    }

    /// <summary>
    /// Writes an HF checkpoint directory: the LAVIS tensors laid over <paramref name="baseDirectory"/> (an HF BLIP-2 /
    /// InstructBLIP checkpoint, whose config and tokenizer files are copied), or, without a base, over a fresh model of
    /// <paramref name="preset"/>, which the checkpoint must then cover entirely. Returns (tensors taken, parameters in the model).
    /// </summary>
    public static (int Taken, int Total) Convert(string checkpoint, string? baseDirectory, string? preset, string outDirectory)
    {
        if ((baseDirectory is null) == (preset is null)) throw new BadInputException("give exactly one of --base (an HF checkpoint directory) or --preset");
        var stored = PthFile.ReadTensors(checkpoint);
        // torch.save({"model": state_dict, "optimizer": …, "epoch": …}): only the model's tensors.
        var state = stored.Keys.Any(k => k.StartsWith("model.", StringComparison.Ordinal))
            ? stored.Where(kv => kv.Key.StartsWith("model.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key["model.".Length..], kv => kv.Value)
            : stored;
        using var model = baseDirectory is not null ? PretrainedModel.Load(baseDirectory) : ModelFamilies.FromPreset(preset!);
        if (model.ModelType is not ("blip-2" or "instructblip"))
            throw new BadInputException($"LAVIS checkpoints are BLIP-2 / InstructBLIP; the base is {model.ModelType}", baseDirectory ?? preset);
        var tensors = ToHf(state, model.ModelType == "instructblip", checkpoint);
        if (tensors.Count == 0) throw new BadInputException("no LAVIS model weights in the file (expected keys such as visual_encoder.*, Qformer.bert.*, t5_proj.*)", checkpoint);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        if (tensors.Keys.FirstOrDefault(k => !parameters.ContainsKey(k)) is string unknown)
            throw new BadInputException($"'{unknown}' (from the LAVIS checkpoint) is not a parameter of the {model.ModelType} model", checkpoint);
        if (baseDirectory is null && parameters.Keys.FirstOrDefault(k => !tensors.ContainsKey(k)) is string missing)
            throw new BadInputException($"the checkpoint holds {tensors.Count} of the model's {parameters.Count} parameters (e.g. not '{missing}'): LAVIS saves only what a run trained, so give the HF base with --base", checkpoint);
        using (torch.no_grad())
            foreach (var (name, value) in tensors)
            {
                var p = parameters[name];
                if (!value.shape.SequenceEqual(p.shape))
                    throw new BadInputException($"'{name}' is [{string.Join(", ", value.shape)}] in the checkpoint but the model has [{string.Join(", ", p.shape)}]", checkpoint);
                p.copy_(value);
            }
        foreach (var t in stored.Values) t.Dispose();
        PretrainedModel.Save(model, outDirectory);
        if (baseDirectory is not null) PretrainedModel.CopyAuxiliaryFiles(baseDirectory, outDirectory);
        return (tensors.Count, parameters.Count);
    }
}
