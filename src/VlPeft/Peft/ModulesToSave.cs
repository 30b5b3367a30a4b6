using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Peft;

/// <summary>
/// modules_to_save: whole modules trained alongside the adapters. HF PEFT keeps a trainable copy
/// beside the frozen original; VlPeft trains the module in place and keeps a snapshot of the
/// original values, which is swapped in while adapters are disabled. Module names follow HF's
/// rule (the path ends with the given name); saved keys are the parameters' own names.
/// </summary>
sealed class ModulesToSave
{
    readonly List<(string Name, TorchSharp.Modules.Parameter Parameter, Tensor Original)> entries = new();
    readonly Dictionary<string, Tensor> trained = new();

    public ModulesToSave(nn.Module model, IReadOnlyList<string> names)
    {
        var roots = TargetMatcher.OrdinaryModules(model)
            .Where(m => names.Any(n => m.Path.EndsWith(n, StringComparison.Ordinal))).Select(m => m.Path).ToList();
        if (roots.Count == 0)
            throw new BadInputException($"modules_to_save [{string.Join(", ", names)}] names no module of the model");
        using var _ = torch.no_grad();
        foreach (var (name, p) in TargetMatcher.OrdinaryParameters(model))
            if (roots.Any(r => name.StartsWith(r + ".", StringComparison.Ordinal)))
                entries.Add((name, p, p.detach().clone().DetachFromDisposeScope()));
    }

    public IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> Parameters => entries.Select(e => (e.Name, e.Parameter)).ToList();

    public void UseOriginal()
    {
        using var _ = torch.no_grad();
        foreach (var (name, p, original) in entries)
        {
            trained[name] = p.detach().clone().DetachFromDisposeScope();
            p.copy_(original);
        }
    }

    public void UseTrained()
    {
        using var _ = torch.no_grad();
        foreach (var (name, p, _) in entries)
            if (trained.Remove(name, out var t))
            {
                p.copy_(t);
                t.Dispose();
            }
    }
}
