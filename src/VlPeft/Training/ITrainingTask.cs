using static TorchSharp.torch;

namespace VlPeft.Training;

/// <summary>What the trainer needs from a task: examples to batch, a loss, and a validation metric (higher is better).</summary>
public interface ITrainingTask
{
    int TrainCount { get; }

    /// <summary>The mean loss of these training examples (model in train mode); <paramref name="random"/> drives augmentation.</summary>
    Tensor Loss(IReadOnlyList<int> examples, int epoch, Random random);

    /// <summary>The validation metric after an epoch (the trainer sets eval mode and no_grad).</summary>
    double Validate();
}
