using VlPeft.Nn;

namespace VlPeft.Peft.Routing;

/// <summary>Attaches <see cref="RoutedLoraAdapter"/>s; routed ones refuse to merge (they depend on each input's visual feature).</summary>
public sealed class RoutedLoraTuner : PeftTuner
{
    public RoutedLoraTuner(RoutedLoraConfig config, string adapterName) : base(config, adapterName) { }

    RoutedLoraConfig Settings => (RoutedLoraConfig)Config;

    public override LinearAdapter CreateLinearAdapter(string path, Linear layer)
    {
        CheckedRank(path, layer, Settings.R);
        if (Settings.EnableLora is { } parts && layer.OutFeatures % parts.Count != 0)
            throw new BadInputException($"enable_lora has {parts.Count} parts but '{path}' has {layer.OutFeatures} outputs, not a multiple");
        return new RoutedLoraAdapter(AdapterName, layer, Settings);
    }

    public override string? MergeRefusal => Settings.Function == RoutingFunction.None ? null
        : $"routed LoRA ({Settings.Routing}) computes its update from each input's visual feature, so it is not one fixed ΔW that could be folded into the weights";
}
