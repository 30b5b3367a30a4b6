using System.Text.RegularExpressions;
using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;

namespace VlPeft.Peft;

/// <summary>
/// HF PEFT's target matching (tuners_utils.check_target_module_exists and inject_adapter):
/// exclude_modules wins; modules named in modules_to_save are never targets; a regex target
/// must fully match the dotted path; a list target matches exactly or as a dot-bounded suffix;
/// layers_to_transform (list targets only) keeps modules whose layer index is listed.
/// </summary>
public static class TargetMatcher
{
    public static bool IsTarget(PeftConfig config, string path)
    {
        var targets = config.TargetModules ?? throw new BadInputException("target_modules must be given");
        if (config.ExcludeModules is { } exclude && exclude.Matches(path)) return false;
        if (config.ModulesToSave is { } save && save.Any(m => Regex.IsMatch(path, $"^(.*\\.)?{Regex.Escape(m)}(\\..*)?$")))
            return false;
        if (targets.Regex != null && !targets.IsAllLinear) return targets.Matches(path);
        if (!targets.Matches(path)) return false;
        if (config.LayersToTransform is { Count: > 0 } layers)   // an empty list means every layer, as in HF
        {
            int? index = LayerIndex(path, config.LayersPattern);
            return index is int i && layers.Contains(i);
        }
        return true;
    }

    /// <summary>
    /// The layer number in a path: the digits after the first <c>.&lt;segment&gt;.</c> (or after
    /// <c>.&lt;pattern&gt;.</c> for each given layers_pattern, tried in order); null if none.
    /// </summary>
    public static int? LayerIndex(string path, IReadOnlyList<string>? patterns)
    {
        var regexes = patterns is { Count: > 0 }
            ? patterns.Select(p => $"^.*?\\.{Regex.Escape(p)}\\.(\\d+)\\.")
            : new[] { "^.*?\\.[^.]*\\.(\\d+)\\." };
        foreach (var regex in regexes)
        {
            var match = Regex.Match(path, regex);
            if (match.Success) return int.Parse(match.Groups[1].Value);
        }
        return null;
    }

    /// <summary>All adaptable layers the config selects, in module order. No match is an error, as in HF PEFT.</summary>
    public static IReadOnlyList<(string Path, Linear Layer)> FindTargets(nn.Module model, PeftConfig config)
    {
        var modules = OrdinaryModules(model).ToList();
        if (config.TargetModules is { IsAllLinear: true })
        {
            // HF expands all-linear to the set of linear leaf names, minus the output head.
            var names = modules.Where(m => m.Module is Linear).Select(m => m.Path.Split('.')[^1])
                .Where(n => n != "lm_head").Distinct().ToArray();
            config = config with { TargetModules = ModuleSelector.FromNames(names) };
        }
        return Find<Linear>(modules, config, "only linear layers can be adapted", $"target modules {config.TargetModules} not found in the base model; check the module names");
    }

    /// <summary>
    /// The adapter sites the config selects, by the same rules (site paths such as
    /// <c>language_model.model.layers.3.adapter_before_attention</c>). No match is an error.
    /// </summary>
    public static IReadOnlyList<(string Path, AdapterSite Site)> FindSites(nn.Module model, PeftConfig config) =>
        Find<AdapterSite>(OrdinaryModules(model).ToList(), config,
            $"{config.PeftType} attaches at adapter sites (…adapter_before_attention, …adapter_after_ffn)",
            $"target modules {config.TargetModules} match no adapter site of the base model; check the site names");

    /// <summary>The selected modules, each of which must be a <typeparamref name="T"/>; no match is an error, as in HF PEFT.</summary>
    static IReadOnlyList<(string, T)> Find<T>(IEnumerable<(string Path, nn.Module Module)> modules, PeftConfig config, string wrongKind, string noMatch) where T : nn.Module
    {
        var found = new List<(string, T)>();
        foreach (var (path, module) in modules)
        {
            if (!IsTarget(config, path)) continue;
            if (module is not T target) throw new BadInputException($"target module '{path}' is a {module.GetType().Name}; {wrongKind}");
            found.Add((path, target));
        }
        if (found.Count == 0) throw new BadInputException(noMatch);
        return found;
    }

    /// <summary>named_modules() without adapter containers, site adapters, and anything inside them.</summary>
    public static IEnumerable<(string Path, nn.Module Module)> OrdinaryModules(nn.Module model)
    {
        var all = model.named_modules().ToList();
        var roots = AdapterRoots(all);
        return all.Where(m => !roots.Any(r => IsUnder(m.name, r))).Select(m => (m.name, m.module));
    }

    /// <summary>named_parameters() without adapter tensors (in containers or at sites): the base model's own parameters.</summary>
    public static IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> OrdinaryParameters(nn.Module model)
    {
        var roots = AdapterRoots(model.named_modules());
        return model.named_parameters().Where(p => !roots.Any(r => IsUnder(p.name, r))).Select(p => (p.name, p.parameter));
    }

    /// <summary>Where adapter state lives: the adapter containers of linear layers, and the modules attached at sites.</summary>
    public static List<string> AdapterRoots(IEnumerable<(string name, nn.Module module)> modules)
    {
        var list = modules.ToList();
        var sites = list.Where(m => m.module is AdapterSite).Select(m => m.name + ".").ToList();
        return list.Where(m => m.module is AdapterContainer || sites.Any(s => m.name.StartsWith(s, StringComparison.Ordinal) && !m.name[s.Length..].Contains('.')))
            .Select(m => m.name).ToList();
    }

    static bool IsUnder(string name, string root) => name == root || name.StartsWith(root + ".", StringComparison.Ordinal);
}
