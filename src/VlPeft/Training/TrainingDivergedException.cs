namespace VlPeft.Training;

/// <summary>The loss became NaN or infinite; the last good checkpoint is kept.</summary>
public sealed class TrainingDivergedException : Exception
{
    public TrainingDivergedException(string message) : base(message) { }
}

/// <summary>Raised by <see cref="TrainerOptions.InterruptAfterSteps"/> to simulate a killed run.</summary>
public sealed class TrainingInterruptedException : Exception
{
    public TrainingInterruptedException(int step) : base($"interrupted after optimizer step {step}") { }
}
