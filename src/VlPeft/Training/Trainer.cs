using System.Diagnostics;
using TorchSharp;
using VlPeft.Distributed;
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
/// Under MPI (<see cref="Cluster"/>) the micro-batches of each optimizer step are dealt to the ranks (micro-batch m of a
/// step to rank m mod ranks), each with the seeds one process would use, and the gradients are summed before the step
/// (<see cref="DataParallel"/>): the run computes what one process computes, whatever the loss normalisation or dropout.
/// Rank 0 alone writes the run directory; the others wait for its checkpoints at a barrier.
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
        var cluster = Cluster.Current;
        if (options.GradientAccumulation % cluster.Size != 0)
            throw new BadInputException($"training.gradient_accumulation ({options.GradientAccumulation}) must be a multiple of the number of ranks ({cluster.Size}): " +
                "each rank runs whole micro-batches of batch_size, so that the run means what one process with the same global batch (batch_size × gradient_accumulation) means; " +
                $"e.g. gradient_accumulation: {cluster.Size * options.GradientAccumulation} with batch_size: {Math.Max(1, options.BatchSize / cluster.Size)} keeps about the same global batch");
        var trainable = Trainable();
        var parallel = new DataParallel(cluster, trainable);
        using var optimizer = OptimizerFactory.AdamW(trainable, options.LearningRate, options.WeightDecay, options.Beta1, options.Beta2,
            learningRateFor: options.LearningRateFor, decayRule: options.WeightDecayRule);
        var ratios = OptimizerFactory.LearningRateRatios(optimizer, options.LearningRate);
        var state = new TrainerState();
        if (cluster.IsRoot)
        {
            TrainingCheckpoint.RemoveLeftovers(run.LastCheckpoint);   // a killed run's half-written checkpoints
            TrainingCheckpoint.RemoveLeftovers(run.BestCheckpoint);
        }
        string? checkpoint = resume ? TrainingCheckpoint.Find(run.LastCheckpoint) : null;
        if (resume && checkpoint is null)
            throw new BadInputException("--resume: the run directory holds no checkpoint to continue from (start without --resume)", run.LastCheckpoint);
        if (checkpoint != null)
        {
            state = TrainingCheckpoint.Load(checkpoint, trainable, optimizer, peft);
            if (cluster.IsRoot) run.TruncateMetricsAfter(state.GlobalStep);
        }
        else if (cluster.IsRoot && File.Exists(run.MetricsFile)) File.Delete(run.MetricsFile);
        parallel.BroadcastParameters();

        int totalSteps = StepsPerEpoch * options.Epochs;
        var watch = Stopwatch.StartNew();
        long samples = 0;
        double allReduceLogged = 0;
        for (int epoch = state.Epoch; epoch < options.Epochs && !state.Stopped; epoch++)
        {
            model.train();
            var order = Shuffle(task.TrainCount, new Random(Seeds.Mix(options.Seed, epoch, 1)));
            int step = state.GlobalStep;
            double lossSum = 0;
            int lossCount = 0, stepsSinceLog = 0;
            var epochWatch = Stopwatch.StartNew();
            for (int micro = 0; micro < MicroBatchesPerEpoch; micro++)
            {
                bool stepEnd = (micro + 1) % options.GradientAccumulation == 0 || micro == MicroBatchesPerEpoch - 1;
                bool mine = micro % options.GradientAccumulation % cluster.Size == cluster.Rank;
                using var quiet = GcQuietRegion.Enter(); // one per micro-step: entering costs a collection (≈ 1 ms)
                bool stepStart = micro % options.GradientAccumulation == 0;
                if (stepStart)
                    OptimizerFactory.SetLearningRate(optimizer, LearningRateSchedule.At(options.Schedule, options.LearningRate, options.MinLearningRate,
                        step, epoch, totalSteps, options.Epochs, options.WarmupSteps, epoch + (double)micro / MicroBatchesPerEpoch, options.WarmupEpochs), ratios);
                var batch = order.Skip(micro * options.BatchSize).Take(options.BatchSize).ToList();
                int microIndex = epoch * MicroBatchesPerEpoch + micro;
                if (mine)
                {
                    lossSum += MicroBatch(batch, epoch, microIndex, step);
                    lossCount++;
                    samples += batch.Count;
                }
                if (!stepEnd) continue;
                parallel.AllReduceGradients();   // global gradients: the clipping norm and AdaLoRA's scores are the same on every rank
                if (options.MaxGradNorm is double maxNorm) torch.nn.utils.clip_grad_norm_(trainable.Select(t => t.Parameter), maxNorm);
                optimizer.step();
                step++;
                peft?.AfterOptimizerStep(step);   // after step, before zero_grad: AdaLoRA's allocator reads the gradients
                optimizer.zero_grad();
                stepsSinceLog++;
                if (step % options.LogEvery == 0 || micro == MicroBatchesPerEpoch - 1)
                {
                    var totals = new[] { lossSum, lossCount };
                    cluster.AllReduceSum(totals);   // the loss of every micro-batch since the last log, whichever rank ran it
                    var values = new Dictionary<string, double>
                    {
                        ["epoch"] = epoch + (micro + 1.0) / MicroBatchesPerEpoch,
                        ["loss"] = totals[0] / totals[1],
                        ["lr"] = optimizer.ParamGroups.First().LearningRate / ratios[0],
                        ["samples_per_second"] = totals[1] * options.BatchSize / Math.Max(1e-9, epochWatch.Elapsed.TotalSeconds),
                    };
                    if (cluster.IsDistributed) values["allreduce_ms"] = 1e3 * (parallel.AllReduceSeconds - allReduceLogged) / stepsSinceLog;
                    if (cluster.IsRoot) run.Log(step, values, "train");
                    allReduceLogged = parallel.AllReduceSeconds;
                    lossSum = 0;
                    lossCount = 0;
                    stepsSinceLog = 0;
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
            if (cluster.IsRoot)
            {
                run.Log(step, new Dictionary<string, double> { ["epoch"] = epoch + 1, ["val_metric"] = metric }, "val");
                if (improved) TrainingCheckpoint.Save(run.BestCheckpoint, trainable, optimizer, state, peft);
                TrainingCheckpoint.Save(run.LastCheckpoint, trainable, optimizer, state, peft);
            }
            cluster.Barrier();   // the checkpoints are on disk before any rank reads them (the best one, below)
        }
        // Test on the best checkpoint, as the Q-Former PEFT paper does (LaVIN tests the last one).
        if (!options.KeepLast && TrainingCheckpoint.Find(run.BestCheckpoint) is string best)
        {
            using var scratch = OptimizerFactory.AdamW(trainable, options.LearningRate, options.WeightDecay, learningRateFor: options.LearningRateFor, decayRule: options.WeightDecayRule);
            TrainingCheckpoint.Load(best, trainable, scratch);
        }
        var allSamples = new double[] { samples };
        cluster.AllReduceSum(allSamples);
        return new TrainResult(state, allSamples[0] / Math.Max(1e-9, watch.Elapsed.TotalSeconds), watch.Elapsed.TotalSeconds);
    }

    /// <summary>Forward and backward of one micro-batch (loss ÷ micro-batches per step); its loss.</summary>
    double MicroBatch(List<int> batch, int epoch, int microIndex, int step)
    {
        torch.manual_seed(Seeds.Mix(options.Seed, microIndex, 2)); // dropout of this micro-batch
        using var scope = torch.NewDisposeScope();
        var loss = task.Loss(batch, epoch, new Random(Seeds.Mix(options.Seed, microIndex, 3)));
        if (peft != null) loss = loss + peft.ExtraLoss();
        double value = loss.item<float>();
        if (!double.IsFinite(value))
            throw new TrainingDivergedException($"loss became {value} at epoch {epoch + 1}, optimizer step {step + 1}; " + (TrainingCheckpoint.Find(run.LastCheckpoint) is string good
                ? $"the last good checkpoint is {good} (--resume continues from it; lower the learning rate first)"
                : "no checkpoint was written yet (lower the learning rate and start again)"));
        (loss / options.GradientAccumulation).backward();
        return value;
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
