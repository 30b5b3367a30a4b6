using VlPeft.Nn.Quantization;

namespace VlPeft.Models;

/// <summary>
/// <c>model.quantize</c>: quantized storage for the linear weights of the frozen towers — <c>nf4</c>, <c>int8</c> or
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

    /// <summary>The format for one module's weight under a parsed plan, or null.</summary>
    public static string? FormatOf(VisionLanguageModel model, IReadOnlyDictionary<string, string> parts, string module) =>
        model.ParameterGroups.FirstOrDefault(g => parts.ContainsKey(g.Name) && g.Contains(module + ".weight")) is { } group ? parts[group.Name] : null;

    /// <summary>Quantizes every linear weight of the chosen parts in place; logs the bytes before and after.</summary>
    public static void Apply(VisionLanguageModel model, IReadOnlyDictionary<string, string> parts)
    {
        foreach (var (part, format) in parts)
        {
            var group = model.ParameterGroups.First(g => g.Name == part);
            long before = 0, after = 0;
            int count = 0;
            foreach (var (name, module) in model.named_modules())
            {
                if (module is not Nn.Linear linear || !group.Contains(name + ".weight") || linear.Quantized is not null) continue;
                before += linear.weight.NumberOfElements * linear.weight.ElementSize;
                linear.weight.requires_grad = false;   // frozen tower: the PEFT plan refuses to train it later
                linear.Quantize(format);
                after += linear.Quantized!.Bytes;
                count++;
            }
            Log.Info($"quantized {count} linear weights of {part} to {format}: {before / 1e6:F1} MB → {after / 1e6:F1} MB");
        }
    }

    /// <summary>The linear layers under a module whose weight is held quantized, by module name.</summary>
    public static IEnumerable<(string Name, Nn.Linear Layer)> QuantizedLinears(TorchSharp.torch.nn.Module module) =>
        module.named_modules().Where(m => m.module is Nn.Linear { Quantized: not null }).Select(m => (m.name, (Nn.Linear)m.module));

    /// <summary>Logs what a quantized load holds per part.</summary>
    public static void Report(VisionLanguageModel model, IReadOnlyDictionary<string, string> parts)
    {
        foreach (var (part, format) in parts)
        {
            var group = model.ParameterGroups.First(g => g.Name == part);
            var layers = QuantizedLinears(model).Where(l => group.Contains(l.Name + ".weight")).Select(l => l.Layer.Quantized!).ToList();
            Log.Info($"quantized {layers.Count} linear weights of {part} to {format} while loading: {layers.Sum(q => q.Bytes) / 1e6:F1} MB");
        }
    }

    /// <summary>A PEFT plan that would train a quantized weight (full fine-tuning of a quantized part) is refused.</summary>
    public static void RefuseTrainingQuantized(VisionLanguageModel model, string source)
    {
        var trained = QuantizedLinears(model).Where(l => l.Layer.weight.requires_grad).Select(l => l.Name).ToList();
        if (trained.Count > 0)
            throw new BadInputException($"the plan trains quantized weights ({string.Join(", ", trained.Take(3))}{(trained.Count > 3 ? ", …" : "")}): leave that part unquantized (model.quantize) or train adapters on it", source);
    }
}
