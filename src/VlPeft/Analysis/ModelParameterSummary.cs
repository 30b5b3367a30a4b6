using TorchSharp;
using VlPeft.Models;
using VlPeft.Peft;
using static TorchSharp.torch;

namespace VlPeft.Analysis;

/// <summary>
/// What <c>vlpeft params</c> reports: per component and per parameter group the total and trainable
/// counts, and the trainable share of the whole model and of the bridge baseline (every parameter outside
/// the frozen towers: for InstructBLIP the Q-Former + query tokens + projection, the paper's qformer-full).
/// The model is built on the meta device, so no weights are allocated and the counts come from the same
/// module tree and PEFT code that training uses.
/// </summary>
public sealed record ModelParameterSummary(
    IReadOnlyList<ParameterCount> Components,
    IReadOnlyList<ParameterCount> Groups,
    long Total,
    long Trainable,
    double TrainablePercent,
    long BaselineTrainable,
    double TrainablePercentOfBaseline,
    IReadOnlyList<WeightBytes> Bytes)
{
    /// <summary>Builds a preset (or a config.json path) on the meta device and applies a plan named by a PEFT preset or adapter config.</summary>
    /// <param name="peft">A plan (<see cref="ResolvePlan"/>); null: the family's first preset (its paper's baseline), or full.</param>
    public static ModelParameterSummary Compute(string modelPresetOrConfig, string? peft, int rank, out string planName)
    {
        var options = new ModelBuildOptions { Device = torch.META };
        using var model = File.Exists(modelPresetOrConfig) || Directory.Exists(modelPresetOrConfig)
            ? ModelFamilies.FromConfigFile(modelPresetOrConfig, options)
            : ModelFamilies.FromPreset(modelPresetOrConfig, options);
        var plan = ResolvePlan(peft ?? ModelFamilies.Of(model).DefaultPeftPreset(model), model, rank);
        planName = plan.Name;
        return Of(model, plan);
    }

    /// <summary>A PEFT preset of the model's family, "full", or an adapter_config.json (file or adapter directory).</summary>
    public static TrainingPlan ResolvePlan(string peft, VisionLanguageModel model, int rank)
    {
        if (peft == TrainingPlan.Full.Name) return TrainingPlan.Full;
        if (!File.Exists(peft) && !Directory.Exists(peft)) return ModelFamilies.Of(model).PeftPreset(peft, model, rank);
        var config = Directory.Exists(peft) ? PeftFiles.ReadConfig(peft) : PeftConfig.Parse(File.ReadAllText(peft), peft);
        // Saved adapters say inference_mode: the count is of what training them would train.
        return new TrainingPlan(Path.GetFileName(peft), config with { InferenceMode = false }, Array.Empty<string>());
    }

    /// <summary>Counts for a built model (the plan is applied to it).</summary>
    public static ModelParameterSummary Of(VisionLanguageModel model, TrainingPlan plan)
    {
        long baseline = BaselineParameters(model);
        // Components in the order of the model's groups (HF order for InstructBLIP), then any others.
        var order = model.ParameterGroups.SelectMany(g => g.Prefixes).Select(p => p.Split('.')[0])
            .Concat(TargetMatcher.OrdinaryParameters(model).Select(p => p.Name.Split('.')[0])).Distinct().ToList();
        plan.Apply(model);
        var report = ParameterReport.Of(model);
        var bytes = WeightBytes.Of(model).OrderBy(b => order.IndexOf(b.Name) is var i && i >= 0 ? i : int.MaxValue).ToList();
        var byName = report.Components.ToDictionary(c => c.Name);
        var components = order.Where(byName.ContainsKey).Select(n => byName[n]).ToList();
        var groupOrder = model.ParameterGroups.Select(g => g.Name).ToList();
        var groups = report.Groups.OrderBy(g => groupOrder.IndexOf(g.Name) is var i && i >= 0 ? i : int.MaxValue).ToList();
        return new ModelParameterSummary(components, groups, report.Total, report.Trainable, report.TrainablePercent,
            baseline, baseline == 0 ? 0 : 100.0 * report.Trainable / baseline, bytes);
    }

    /// <summary>Parameters outside the frozen towers, counted before any adapter is attached.</summary>
    public static long BaselineParameters(VisionLanguageModel model) =>
        TargetMatcher.OrdinaryParameters(model).Where(p => model.GroupOf(p.Name) is not { FrozenTower: true }).Sum(p => p.Parameter.NumberOfElements);
}
