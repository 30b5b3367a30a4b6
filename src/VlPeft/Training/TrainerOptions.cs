namespace VlPeft.Training;

/// <summary>Everything that shapes a training run (all of it goes into the run's saved config).</summary>
public sealed record TrainerOptions
{
    public double LearningRate { get; init; } = 1e-4;
    /// <summary>Base learning rates by parameter path prefix (a model's lr_groups); others use <see cref="LearningRate"/>.</summary>
    public IReadOnlyDictionary<string, double>? PrefixLearningRates { get; init; }
    public double MinLearningRate { get; init; }
    public string Schedule { get; init; } = LearningRateSchedule.LinearDecayPerEpoch;
    public int WarmupSteps { get; init; }
    /// <summary>The half-cycle cosine's warmup, in (fractional) epochs.</summary>
    public double WarmupEpochs { get; init; }
    /// <summary>Which parameters weight decay spares: <see cref="OptimizerFactory.LavisRule"/> or <see cref="OptimizerFactory.TimmRule"/>.</summary>
    public string WeightDecayRule { get; init; } = OptimizerFactory.LavisRule;
    /// <summary>Leave the last epoch's weights in the model after training (LaVIN) instead of the best validation checkpoint's.</summary>
    public bool KeepLast { get; init; }
    public double WeightDecay { get; init; } = 0.05;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public int Epochs { get; init; } = 15;
    public int BatchSize { get; init; } = 16;
    /// <summary>Micro-batches per optimizer step (effective batch = BatchSize × GradientAccumulation).</summary>
    public int GradientAccumulation { get; init; } = 1;
    public double? MaxGradNorm { get; init; }
    /// <summary>Stop after this many epochs without a better validation metric (null: never).</summary>
    public int? Patience { get; init; } = 3;
    public int Seed { get; init; } = 42;
    public int LogEvery { get; init; } = 10;
    /// <summary>For tests and controlled interruptions: stop (as if killed) after this many optimizer steps.</summary>
    public int? InterruptAfterSteps { get; init; }

    /// <summary>The base learning rate of one parameter: its longest matching prefix in <see cref="PrefixLearningRates"/>.</summary>
    public double LearningRateFor(string parameterName) => PrefixLearningRates?
        .Where(kv => parameterName == kv.Key || parameterName.StartsWith(kv.Key + ".", StringComparison.Ordinal))
        .OrderByDescending(kv => kv.Key.Length).Select(kv => (double?)kv.Value).FirstOrDefault() ?? LearningRate;
}
