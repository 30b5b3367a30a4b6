using System.Diagnostics;
using TorchSharp;
using VlPeft.Runtime;
using VlPeft.Peft;
using static TorchSharp.torch;

namespace VlPeft.Training;

/// <summary>What a finished run reports.</summary>
public sealed record TrainResult(TrainerState State, double SamplesPerSecond, double Seconds);

/// <summary>
/// The training loop: AdamW (LAVIS decay rule), the LR schedule, gradient accumulation, clipping,
/// one dispose scope per micro-batch, a NaN/Inf guard, the PEFT tuners' hooks in HF PEFT's order
/// (extra loss in the loss; backward → step → after-step hook (AdaLoRA's update_and_allocate) → zero_grad),
/// validation and early stopping after every epoch, and a resumable checkpoint after every epoch.
/// Everything random is derived from the seed and the position in training (data order from the
/// epoch, dropout from the micro-batch index), so a resumed run repeats an uninterrupted one exactly.
/// </summary>
public sealed class Trainer
{
    readonly nn.Module model;
    readonly PeftModel? peft;
    readonly ITrainingTask task;
    readonly TrainerOptions options;
    readonly RunDirectory run;

    public Trainer(nn.Module model, PeftModel? peft, ITrainingTask task, TrainerOptions options, RunDirectory run)
    {
        this.model = model;
        this.peft = peft;
        this.task = task;
        this.options = options;
        this.run = run;
    }

    /// <summary>The trainable parameters, by name (what checkpoints hold).</summary>
    public IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> Trainable() =>
        model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter)).ToList();

    public int MicroBatchesPerEpoch => (task.TrainCount + options.BatchSize - 1) / options.BatchSize;
    public int StepsPerEpoch => (MicroBatchesPerEpoch + options.GradientAccumulation - 1) / options.GradientAccumulation;

    public TrainResult Run(bool resume = false)
    {
        var trainable = Trainable();
        using var optimizer = OptimizerFactory.AdamW(trainable, options.LearningRate, options.WeightDecay, options.Beta1, options.Beta2,
            learningRateFor: options.LearningRateFor, decayRule: options.WeightDecayRule);
        var ratios = OptimizerFactory.LearningRateRatios(optimizer, options.LearningRate);
        var state = new TrainerState();
        TrainingCheckpoint.RemoveLeftovers(run.LastCheckpoint);   // a killed run's half-written checkpoints
        TrainingCheckpoint.RemoveLeftovers(run.BestCheckpoint);
        string? checkpoint = resume ? TrainingCheckpoint.Find(run.LastCheckpoint) : null;
        if (resume && checkpoint is null)
            throw new BadInputException("--resume: the run directory holds no checkpoint to continue from (start without --resume)", run.LastCheckpoint);
        if (checkpoint != null)
        {
            state = TrainingCheckpoint.Load(checkpoint, trainable, optimizer, peft);
            run.TruncateMetricsAfter(state.GlobalStep);
        }
        else if (File.Exists(run.MetricsFile)) File.Delete(run.MetricsFile);

        int totalSteps = StepsPerEpoch * options.Epochs;
        var watch = Stopwatch.StartNew();
        long samples = 0;
        for (int epoch = state.Epoch; epoch < options.Epochs && !state.Stopped; epoch++)
        {
            model.train();
            var order = Shuffle(task.TrainCount, new Random(Seeds.Mix(options.Seed, epoch, 1)));
            int step = state.GlobalStep;
            double lossSum = 0;
            int lossCount = 0;
            var epochWatch = Stopwatch.StartNew();
            for (int micro = 0; micro < MicroBatchesPerEpoch; micro++)
            {
                using var quiet = GcQuietRegion.Enter(); // one per micro-step: entering costs a collection (≈ 1 ms)
                bool stepStart = micro % options.GradientAccumulation == 0;
                if (stepStart)
                    OptimizerFactory.SetLearningRate(optimizer, LearningRateSchedule.At(options.Schedule, options.LearningRate, options.MinLearningRate,
                        step, epoch, totalSteps, options.Epochs, options.WarmupSteps, epoch + (double)micro / MicroBatchesPerEpoch, options.WarmupEpochs), ratios);
                var batch = order.Skip(micro * options.BatchSize).Take(options.BatchSize).ToList();
                int microIndex = epoch * MicroBatchesPerEpoch + micro;
                torch.manual_seed(Seeds.Mix(options.Seed, microIndex, 2)); // dropout of this micro-batch
                double value;
                using (torch.NewDisposeScope())
                {
                    var loss = task.Loss(batch, epoch, new Random(Seeds.Mix(options.Seed, microIndex, 3)));
                    if (peft != null) loss = loss + peft.ExtraLoss();
                    value = loss.item<float>();
                    if (!double.IsFinite(value))
                        throw new TrainingDivergedException($"loss became {value} at epoch {epoch + 1}, optimizer step {step + 1}; " + (TrainingCheckpoint.Find(run.LastCheckpoint) is string good
                            ? $"the last good checkpoint is {good} (--resume continues from it; lower the learning rate first)"
                            : "no checkpoint was written yet (lower the learning rate and start again)"));
                    (loss / options.GradientAccumulation).backward();
                }
                lossSum += value;
                lossCount++;
                samples += batch.Count;
                bool stepEnd = (micro + 1) % options.GradientAccumulation == 0 || micro == MicroBatchesPerEpoch - 1;
                if (!stepEnd) continue;
                if (options.MaxGradNorm is double maxNorm) torch.nn.utils.clip_grad_norm_(trainable.Select(t => t.Parameter), maxNorm);
                optimizer.step();
                step++;
                peft?.AfterOptimizerStep(step);   // after step, before zero_grad: AdaLoRA's allocator reads the gradients
                optimizer.zero_grad();
                if (step % options.LogEvery == 0 || micro == MicroBatchesPerEpoch - 1)
                {
                    run.Log(step, new Dictionary<string, double>
                    {
                        ["epoch"] = epoch + (micro + 1.0) / MicroBatchesPerEpoch,
                        ["loss"] = lossSum / lossCount,
                        ["lr"] = optimizer.ParamGroups.First().LearningRate / ratios[0],
                        ["samples_per_second"] = lossCount * options.BatchSize / Math.Max(1e-9, epochWatch.Elapsed.TotalSeconds),
                    }, "train");
                    lossSum = 0;
                    lossCount = 0;
                    epochWatch.Restart();
                }
                if (options.InterruptAfterSteps is int stop && step >= stop) throw new TrainingInterruptedException(step);
            }

            double metric = Validate();
            bool improved = state.BestMetric is null || metric > state.BestMetric;
            state = state with
            {
                Epoch = epoch + 1,
                GlobalStep = step,
                BestMetric = improved ? metric : state.BestMetric,
                BestEpoch = improved ? epoch : state.BestEpoch,
                EpochsWithoutImprovement = improved ? 0 : state.EpochsWithoutImprovement + 1,
                ValidationHistory = state.ValidationHistory.Append(metric).ToList(),
            };
            if (options.Patience is int patience && state.EpochsWithoutImprovement >= patience) state = state with { Stopped = true };
            run.Log(step, new Dictionary<string, double> { ["epoch"] = epoch + 1, ["val_metric"] = metric }, "val");
            if (improved) TrainingCheckpoint.Save(run.BestCheckpoint, trainable, optimizer, state, peft);
            TrainingCheckpoint.Save(run.LastCheckpoint, trainable, optimizer, state, peft);
        }
        // Test on the best checkpoint, as the Q-Former PEFT paper does (LaVIN tests the last one).
        if (!options.KeepLast && TrainingCheckpoint.Find(run.BestCheckpoint) is string best)
        {
            using var scratch = OptimizerFactory.AdamW(trainable, options.LearningRate, options.WeightDecay, learningRateFor: options.LearningRateFor, decayRule: options.WeightDecayRule);
            TrainingCheckpoint.Load(best, trainable, scratch);
        }
        return new TrainResult(state, samples / Math.Max(1e-9, watch.Elapsed.TotalSeconds), watch.Elapsed.TotalSeconds);
    }

    double Validate()
    {
        model.eval();
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        return task.Validate();
    }

    static List<int> Shuffle(int count, Random random)
    {
        var order = Enumerable.Range(0, count).ToList();
        for (int i = count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}
