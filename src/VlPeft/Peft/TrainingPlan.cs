namespace VlPeft.Peft;

/// <summary>
/// A way to fine-tune a model: an optional adapter (attached as "default"), more named adapters trained with it
/// (another method on another part, as the Bottleneck Adapter paper's LoRA-in-the-LLM + RepAdapter-in-the-ViT hybrid),
/// and the base-model parts trained in full alongside them (module path prefixes; <c>*</c> = every parameter);
/// everything else is frozen.
/// </summary>
public sealed record TrainingPlan(string Name, PeftConfig? Peft, IReadOnlyList<string> TrainInFull)
{
    public const string Everything = "*";

    /// <summary>Adapters attached, active and trained beside the default one, by name.</summary>
    public IReadOnlyList<(string Name, PeftConfig Config)> MoreAdapters { get; init; } = Array.Empty<(string, PeftConfig)>();

    /// <summary>Full fine-tuning: every parameter trains.</summary>
    public static TrainingPlan Full { get; } = new("full", null, new[] { Everything });

    /// <summary>Freezes the model, attaches the adapter and unfreezes the in-full parts.</summary>
    public PeftModel? Apply(TorchSharp.torch.nn.Module model)
    {
        if (Peft is null)
        {
            foreach (var (name, p) in model.named_parameters())
                p.requires_grad = TrainInFull.Any(prefix => prefix == Everything || name == prefix || name.StartsWith(prefix + ".", StringComparison.Ordinal));
            return null;
        }
        var peft = PeftModel.Create(model, Peft);
        foreach (var (name, config) in MoreAdapters) peft.AddAdapter(name, config);
        if (MoreAdapters.Count > 0) peft.SetAdapter(MoreAdapters.Select(a => a.Name).Prepend("default").ToArray());
        peft.TrainInFull(TrainInFull);
        return peft;
    }
}

