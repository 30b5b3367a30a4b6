namespace VlPeft.Peft;

/// <summary>
/// A way to fine-tune a model: an optional adapter and the base-model parts trained in full alongside it
/// (module path prefixes; <c>*</c> = every parameter); everything else is frozen.
/// </summary>
public sealed record TrainingPlan(string Name, PeftConfig? Peft, IReadOnlyList<string> TrainInFull)
{
    public const string Everything = "*";

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
        peft.TrainInFull(TrainInFull);
        return peft;
    }
}

