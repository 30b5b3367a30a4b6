using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Training;

/// <summary>
/// AdamW over the trainable parameters with LAVIS's weight-decay rule: decay only parameters with
/// ≥ 2 dimensions whose name contains none of "bias", "ln", "bn" (so no decay on biases, norms,
/// LoRA's 1-D tensors or AdaLoRA's E).
/// </summary>
public static class OptimizerFactory
{
    public static bool Decays(string name, Tensor parameter) =>
        parameter.dim() >= 2 && !name.Contains("bias") && !name.Contains("ln") && !name.Contains("bn");

    public static TorchSharp.Modules.AdamW AdamW(IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable,
        double lr, double weightDecay, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        var list = trainable.ToList();
        if (list.Count == 0) throw new BadInputException("nothing to train: no parameter requires grad");
        var decayed = list.Where(p => Decays(p.Name, p.Parameter)).Select(p => p.Parameter).ToList();
        var plain = list.Where(p => !Decays(p.Name, p.Parameter)).Select(p => p.Parameter).ToList();
        var groups = new List<TorchSharp.Modules.AdamW.ParamGroup>();
        if (decayed.Count > 0) groups.Add(new TorchSharp.Modules.AdamW.ParamGroup(decayed, lr, beta1, beta2, eps, weightDecay, false, false));
        if (plain.Count > 0) groups.Add(new TorchSharp.Modules.AdamW.ParamGroup(plain, lr, beta1, beta2, eps, 0, false, false));
        return torch.optim.AdamW(groups, lr, beta1, beta2, eps, weightDecay);
    }

    public static void SetLearningRate(torch.optim.Optimizer optimizer, double lr)
    {
        foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
    }
}
