namespace VlPeft.Training;

/// <summary>Where a run stands; saved with every checkpoint.</summary>
public sealed record TrainerState
{
    /// <summary>Epochs completed.</summary>
    public int Epoch { get; init; }
    /// <summary>Optimizer steps taken.</summary>
    public int GlobalStep { get; init; }
    public double? BestMetric { get; init; }
    public int BestEpoch { get; init; } = -1;
    public int EpochsWithoutImprovement { get; init; }
    public IReadOnlyList<double> ValidationHistory { get; init; } = Array.Empty<double>();
    public bool Stopped { get; init; }
}
