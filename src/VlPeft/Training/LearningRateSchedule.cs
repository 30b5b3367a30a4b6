namespace VlPeft.Training;

/// <summary>
/// The LR schedules of the papers' code, as pure functions of the position in training:
/// LAVIS <c>linear_decay_lr</c> (set once per epoch: init − (init − min)·epoch/max_epoch, no warmup),
/// and linear warmup followed by cosine or linear decay (per optimizer step).
/// </summary>
public static class LearningRateSchedule
{
    public const string LinearDecayPerEpoch = "linear_decay_lr", WarmupCosine = "linear_warmup_cosine_lr", WarmupLinear = "linear_warmup_linear_lr";

    public static readonly string[] Names = { LinearDecayPerEpoch, WarmupCosine, WarmupLinear };

    /// <param name="step">0-based optimizer step of the whole run.</param>
    /// <param name="epoch">0-based epoch.</param>
    public static double At(string schedule, double initial, double minimum, int step, int epoch, int totalSteps, int maxEpochs, int warmupSteps)
    {
        if (schedule == LinearDecayPerEpoch)
            return initial - (initial - minimum) * epoch / maxEpochs;
        if (step < warmupSteps)
            return initial * (step + 1) / warmupSteps;
        double progress = totalSteps <= warmupSteps ? 1 : (double)(step - warmupSteps) / (totalSteps - warmupSteps);
        return schedule switch
        {
            WarmupCosine => minimum + (initial - minimum) * 0.5 * (1 + Math.Cos(Math.PI * progress)),
            WarmupLinear => initial - (initial - minimum) * progress,
            _ => throw new BadInputException($"unknown lr schedule '{schedule}' (known: {string.Join(", ", Names)})"),
        };
    }
}
