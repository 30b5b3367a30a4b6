using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Peft;

/// <summary>
/// modules_to_save: whole modules trained alongside one adapter. HF PEFT keeps a trainable copy per
/// adapter beside the frozen original and set_adapter switches between them; VlPeft trains the module in
/// place and keeps the other values aside: the original while this adapter is inactive or adapters are
/// disabled, this adapter's trained values while it is swapped out. Module names follow HF's rule (the
/// path ends with the given name); saved keys are the parameters' own names.
/// </summary>
sealed class ModulesToSave
{
    readonly List<(string Name, TorchSharp.Modules.Parameter Parameter, Tensor Original)> entries = new();
    readonly Dictionary<string, Tensor> trained = new();
    bool inPlace = true;

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

    /// <summary>Puts this adapter's trained copy in place (true) or sets it aside and restores the original (false).</summary>
    public void Select(bool active)
    {
        if (active == inPlace) return;
        using var _ = torch.no_grad();
        foreach (var (name, p, original) in entries)
        {
            if (active)
            {
                var t = trained[name];
                p.copy_(t);
                t.Dispose();
                trained.Remove(name);
            }
            else
            {
                trained[name] = p.detach().clone().DetachFromDisposeScope();
                p.copy_(original);
            }
        }
        inPlace = active;
    }

    public void UseOriginal() => Select(false);
}
