using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn;

/// <summary>
/// A per-kind holder of adapter state keyed by adapter name, mirroring HF PEFT's ModuleDict /
/// ParameterDict members (<c>lora_A</c>, <c>lora_E</c>, …). It is what makes in-memory names read
/// <c>…query.lora_A.default.weight</c> (a module entry) or <c>…query.lora_E.default</c> (a parameter entry).
/// </summary>
public sealed class AdapterContainer : nn.Module
{
    public AdapterContainer(string kind) : base(kind) { }

    public void AddModule(string adapter, nn.Module module) => register_module(adapter, module);

    public void AddParameter(string adapter, TorchSharp.Modules.Parameter parameter) => ConditionallyRegisterParameter(adapter, parameter);

    /// <summary>The module entry (null if none). Looked up each time: dtype moves replace objects.</summary>
    public nn.Module? Module(string adapter) =>
        named_children().Where(c => c.name == adapter).Select(c => c.module).FirstOrDefault();

    /// <summary>The parameter entry; looked up each time for the same reason.</summary>
    public TorchSharp.Modules.Parameter Parameter(string adapter) =>
        named_parameters(recurse: false).First(p => p.name == adapter).parameter;

    public bool Has(string adapter) =>
        named_children().Any(c => c.name == adapter) || named_parameters(recurse: false).Any(p => p.name == adapter);

    public void Remove(string adapter)
    {
        register_module(adapter, null!);
        ConditionallyRegisterParameter(adapter, null);
    }

    public bool IsEmpty => !named_children().Any() && !named_parameters(recurse: false).Any();

    /// <summary>Replaces a parameter entry (AdaLoRA resizes on load).</summary>
    public void ReplaceParameter(string adapter, TorchSharp.Modules.Parameter parameter) => ConditionallyRegisterParameter(adapter, parameter);
}
