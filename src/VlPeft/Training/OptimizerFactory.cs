using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Training;

/// <summary>
/// AdamW over the trainable parameters with a weight-decay rule: LAVIS's (decay only parameters with ≥ 2
/// dimensions whose name contains none of "bias", "ln", "bn": no decay on biases, norms, LoRA's 1-D tensors or
/// AdaLoRA's E) or timm's param_groups_weight_decay that LaVIN uses (no decay on 1-D tensors and on "*.bias").
/// </summary>
public static class OptimizerFactory
{
    public const string LavisRule = "lavis", TimmRule = "timm";
    public static readonly string[] Rules = { LavisRule, TimmRule };

    public static bool Decays(string name, Tensor parameter, string rule = LavisRule) => rule == TimmRule
        ? parameter.dim() > 1 && !name.EndsWith(".bias", StringComparison.Ordinal)
        : parameter.dim() >= 2 && !name.Contains("bias") && !name.Contains("ln") && !name.Contains("bn");

    /// <param name="learningRateFor">Per-parameter base learning rate (lr_groups); null: <paramref name="lr"/> for all.</param>
    public static TorchSharp.Modules.AdamW AdamW(IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable,
        double lr, double weightDecay, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, Func<string, double>? learningRateFor = null,
        string decayRule = LavisRule)
    {
        var list = trainable.ToList();
        if (list.Count == 0) throw new BadInputException("nothing to train: no parameter requires grad");
        var groups = new List<TorchSharp.Modules.AdamW.ParamGroup>();
        // One optimizer group per (learning rate, decays?) in first-seen order, so resumed runs rebuild the same groups.
        foreach (var group in list.GroupBy(p => (Lr: learningRateFor?.Invoke(p.Name) ?? lr, Decay: Decays(p.Name, p.Parameter, decayRule))))
            groups.Add(new TorchSharp.Modules.AdamW.ParamGroup(group.Select(p => p.Parameter).ToList(), group.Key.Lr, beta1, beta2, eps,
                group.Key.Decay ? weightDecay : 0, false, false));
        return torch.optim.AdamW(groups, lr, beta1, beta2, eps, weightDecay);
    }

    /// <summary>Each group's base learning rate over the run's base rate: the schedule scales every group alike.</summary>
    public static double[] LearningRateRatios(torch.optim.Optimizer optimizer, double lr) =>
        optimizer.ParamGroups.Select(g => g.LearningRate / lr).ToArray();

    public static void SetLearningRate(torch.optim.Optimizer optimizer, double lr, IReadOnlyList<double>? ratios = null)
    {
        int i = 0;
        foreach (var group in optimizer.ParamGroups) group.LearningRate = lr * (ratios?[i++] ?? 1);
    }
}
