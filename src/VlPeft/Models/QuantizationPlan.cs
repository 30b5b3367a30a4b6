using VlPeft.Nn.Quantization;

namespace VlPeft.Models;

/// <summary>
/// <c>model.quantize</c>: quantized storage for the linear weights (and, opted in, the token tables) of the frozen towers — <c>nf4</c>, <c>int8</c> or
/// <c>none</c> for every frozen tower, or per part (<c>{vision: none, language_model: nf4}</c>, the model's frozen
/// parameter groups). Checkpoints are quantized while they load (<see cref="Loading.PretrainedOptions.Quantize"/>: each
/// weight read, quantized and dropped before the next); a model built from scratch is quantized in place
/// (<see cref="Apply"/>). The compute dtype is the tower's (bf16 with <c>model.dtype: bf16</c>).
/// </summary>
public static class QuantizationPlan
{
    /// <summary>Part name → format; an empty map quantizes nothing.</summary>
    public static IReadOnlyDictionary<string, string> Parse(object? value, VisionLanguageModel model, string source)
    {
        var frozen = model.ParameterGroups.Where(g => g.FrozenTower).Select(g => g.Name).ToList();
        var parts = new Dictionary<string, string>();
        switch (value)
        {
            case null:
                break;
            case string all:
                foreach (var part in frozen) parts[part] = Format(all, "model.quantize", source);
                break;
            case IDictionary<object, object> map:
                foreach (var (key, format) in map)
                {
                    string part = key.ToString()!;
                    if (!frozen.Contains(part))
                        throw new BadInputException($"model.quantize: '{part}' is not a frozen part of {model.ModelType} (parts: {string.Join(", ", frozen)})", source);
                    parts[part] = Format(format?.ToString() ?? "", $"model.quantize.{part}", source);
                }
                break;
            default:
                throw new BadInputException($"model.quantize: expected {string.Join(" | ", QuantizedWeight.Formats)} or a map of parts to those", source);
        }
        return parts.Where(p => p.Value != QuantizedWeight.None).ToDictionary(p => p.Key, p => p.Value);
    }

    static string Format(string value, string key, string source) => QuantizedWeight.Formats.Contains(value) ? value
        : throw new BadInputException($"{key}: '{value}' is not one of {string.Join(", ", QuantizedWeight.Formats)}", source);

    /// <summary>
    /// The modules a parsed plan quantizes, by name, with their format: every linear layer of the chosen parts, and with
    /// <paramref name="embeddings"/> (<c>model.quantize_embeddings</c>) their token tables too. Off by default, as in
    /// QLoRA and Transformers' bitsandbytes integration; on, a 7B LM's 262 MB bf16 table takes 68 MB in nf4.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Targets(VisionLanguageModel model, IReadOnlyDictionary<string, string> parts, bool embeddings)
    {
        var targets = new Dictionary<string, string>();
        if (embeddings && parts.Count == 0) throw new BadInputException("model.quantize_embeddings quantizes the token tables of the quantized parts: set model.quantize (nf4 or int8) too");
        if (parts.Count == 0) return targets;
        var groups = model.ParameterGroups.Where(g => parts.ContainsKey(g.Name)).ToList();
        foreach (var (name, module) in model.named_modules())
        {
            bool target = module is Nn.Linear || (embeddings && module is Nn.Embedding { IsTokenTable: true });
            if (!target) continue;
            if (groups.FirstOrDefault(g => g.Contains(name + ".weight")) is { } group) targets[name] = parts[group.Name];
        }
        return targets;
    }

    /// <summary>Quantizes the targets (<see cref="Targets"/>) in place; logs the bytes before and after per part.</summary>
    public static void Apply(VisionLanguageModel model, IReadOnlyDictionary<string, string> parts, bool embeddings = false)
    {
        var targets = Targets(model, parts, embeddings);
        foreach (var (name, module) in model.named_modules())
        {
            if (!targets.TryGetValue(name, out var format) || module is not IQuantizableWeight { Quantized: null } holder) continue;
            holder.weight.requires_grad = false;   // frozen tower: the PEFT plan refuses to train it later
            holder.Quantize(format);
        }
        Report(model, parts);
    }

    /// <summary>The modules under a module whose weight is held quantized (linear layers, token tables), by module name.</summary>
    public static IEnumerable<(string Name, IQuantizableWeight Layer)> QuantizedModules(TorchSharp.torch.nn.Module module) =>
        module.named_modules().Where(m => m.module is IQuantizableWeight { Quantized: not null }).Select(m => (m.name, (IQuantizableWeight)m.module));

    /// <summary>Logs what the model holds quantized per part.</summary>
    public static void Report(VisionLanguageModel model, IReadOnlyDictionary<string, string> parts)
    {
        foreach (var (part, format) in parts)
        {
            var group = model.ParameterGroups.First(g => g.Name == part);
            var held = QuantizedModules(model).Where(l => group.Contains(l.Name + ".weight")).ToList();
            int tables = held.Count(l => l.Layer is Nn.Embedding);
            Log.Info($"{part}: {held.Count - tables} linear weights{(tables > 0 ? $" and {tables} token table(s)" : "")} held in {format}: {held.Sum(l => l.Layer.Quantized!.Bytes) / 1e6:F1} MB");
        }
    }

    /// <summary>A PEFT plan that would train a quantized weight (full fine-tuning of a quantized part) is refused.</summary>
    public static void RefuseTrainingQuantized(VisionLanguageModel model, string source)
    {
        var trained = QuantizedModules(model).Where(l => l.Layer.weight.requires_grad).Select(l => l.Name).ToList();
        if (trained.Count > 0)
            throw new BadInputException($"the plan trains quantized weights ({string.Join(", ", trained.Take(3))}{(trained.Count > 3 ? ", …" : "")}): leave that part unquantized (model.quantize) or train adapters on it", source);
    }
}
