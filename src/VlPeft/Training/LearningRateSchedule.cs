namespace VlPeft.Training;

/// <summary>
/// The LR schedules of the papers' code, as pure functions of the position in training:
/// LAVIS <c>linear_decay_lr</c> (set once per epoch: init − (init − min)·epoch/max_epoch, no warmup),
/// linear warmup followed by cosine or linear decay (per optimizer step), and MAE's half-cycle cosine that
/// LaVIN uses (set every optimizer step from the fractional epoch: linear warmup from 0 over
/// <c>warmup_epochs</c>, then a half cosine down to the minimum at the last epoch).
/// </summary>
public static class LearningRateSchedule
{
    public const string LinearDecayPerEpoch = "linear_decay_lr", WarmupCosine = "linear_warmup_cosine_lr", WarmupLinear = "linear_warmup_linear_lr",
        HalfCycleCosine = "half_cycle_cosine";

    public static readonly string[] Names = { LinearDecayPerEpoch, WarmupCosine, WarmupLinear, HalfCycleCosine };

    /// <param name="step">0-based optimizer step of the whole run.</param>
    /// <param name="epoch">0-based epoch.</param>
    /// <param name="fractionalEpoch">Epochs done so far, micro-batches included (LaVIN: data_iter_step / len(loader) + epoch).</param>
    public static double At(string schedule, double initial, double minimum, int step, int epoch, int totalSteps, int maxEpochs, int warmupSteps,
        double fractionalEpoch = 0, double warmupEpochs = 0)
    {
        if (schedule == LinearDecayPerEpoch)
            return initial - (initial - minimum) * epoch / maxEpochs;
        if (schedule == HalfCycleCosine)
            return fractionalEpoch < warmupEpochs
                ? initial * fractionalEpoch / warmupEpochs
                : minimum + (initial - minimum) * 0.5 * (1 + Math.Cos(Math.PI * (fractionalEpoch - warmupEpochs) / (maxEpochs - warmupEpochs)));
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
