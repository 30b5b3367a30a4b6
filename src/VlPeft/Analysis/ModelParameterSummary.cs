using TorchSharp;
using VlPeft.Experiments;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;
using VlPeft.Peft;
using static TorchSharp.torch;

namespace VlPeft.Analysis;

/// <summary>
/// What <c>vlpeft params</c> reports: per component total and trainable counts, and the trainable
/// share of the whole model and of the InstructBLIP baseline (qformer-full: Q-Former + query
/// tokens + projection). The model is built on the meta device, so no weights are allocated and
/// the counts come from the same module tree and PEFT code that training uses.
/// </summary>
public sealed record ModelParameterSummary(
    IReadOnlyList<ParameterCount> Components,
    long Total,
    long Trainable,
    double TrainablePercent,
    long BaselineTrainable,
    double TrainablePercentOfBaseline)
{
    public static ModelParameterSummary Compute(MultimodalConfig config, TrainingPlan plan, Device? device = null)
    {
        using var model = VisionLanguageModels.Create(config, new ModelBuildOptions { Device = device ?? torch.META });
        return Of(model, plan);
    }

    /// <summary>Counts for a built model (the plan is applied to it).</summary>
    public static ModelParameterSummary Of(nn.Module model, TrainingPlan plan)
    {
        var before = ParameterReport.Of(model).Components.ToDictionary(c => c.Name);
        long baseline = new[] { "qformer", "query_tokens", "language_projection" }.Sum(n => before.TryGetValue(n, out var c) ? c.Total : 0);
        plan.Apply(model);
        var report = ParameterReport.Of(model);
        var byName = report.Components.ToDictionary(c => c.Name);
        var components = BlipForConditionalGeneration.ComponentNames.Where(byName.ContainsKey).Select(n => byName[n]).ToList();
        return new ModelParameterSummary(components, report.Total, report.Trainable, report.TrainablePercent,
            baseline, baseline == 0 ? 0 : 100.0 * report.Trainable / baseline);
    }
}
