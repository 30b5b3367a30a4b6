using TorchSharp;
using VlPeft.Models;
using static TorchSharp.torch;

namespace VlPeft.Analysis;

/// <summary>Total and trainable parameter counts of one named part of a model.</summary>
public sealed record ParameterCount(string Name, long Total, long Trainable);

/// <summary>
/// Exact parameter counts: per top-level component (first path segment, e.g. <c>qformer</c>), per
/// module (the module owning the parameter; adapter tensors count toward the layer or site they adapt),
/// and per parameter group of a vision-language model (adapter tensors count in the group they sit in).
/// Shared tensors count once, as in named_parameters().
/// </summary>
public sealed record ParameterReport(IReadOnlyList<ParameterCount> Components, IReadOnlyList<ParameterCount> Modules,
    IReadOnlyList<ParameterCount> Groups, long Total, long Trainable)
{
    public double TrainablePercent => Total == 0 ? 0 : 100.0 * Trainable / Total;

    public static ParameterReport Of(nn.Module model)
    {
        var containers = Peft.TargetMatcher.AdapterRoots(model.named_modules()).ToHashSet();
        var vlm = model as VisionLanguageModel;
        var components = new Dictionary<string, (long Total, long Trainable)>();
        var modules = new Dictionary<string, (long Total, long Trainable)>();
        var groups = new Dictionary<string, (long Total, long Trainable)>();
        long total = 0, trainable = 0;
        foreach (var (name, p) in model.named_parameters())
        {
            long n = p.NumberOfElements;
            long t = p.requires_grad ? n : 0;
            total += n;
            trainable += t;
            Add(components, name.Split('.')[0], n, t);
            Add(modules, Owner(name, containers), n, t);
            if (vlm != null) Add(groups, vlm.GroupOf(name)?.Name ?? "other", n, t);
        }
        return new ParameterReport(
            components.Select(kv => new ParameterCount(kv.Key, kv.Value.Total, kv.Value.Trainable)).ToList(),
            modules.Select(kv => new ParameterCount(kv.Key, kv.Value.Total, kv.Value.Trainable)).ToList(),
            groups.Select(kv => new ParameterCount(kv.Key, kv.Value.Total, kv.Value.Trainable)).ToList(),
            total, trainable);
    }

    static void Add(Dictionary<string, (long, long)> map, string key, long n, long t)
    {
        var (a, b) = map.GetValueOrDefault(key);
        map[key] = (a + n, b + t);
    }

    /// <summary>The module a parameter belongs to: the path before an adapter container, else before the last segment.</summary>
    static string Owner(string name, HashSet<string> containers)
    {
        var parts = name.Split('.');
        for (int i = 1; i < parts.Length; i++)
            if (containers.Contains(string.Join('.', parts[..i]))) return string.Join('.', parts[..(i - 1)]);
        return parts.Length == 1 ? "" : string.Join('.', parts[..^1]);
    }
}
