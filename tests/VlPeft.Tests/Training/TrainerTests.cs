using System.Text.Json.Nodes;
using TorchSharp;
using VlPeft.Peft;
using VlPeft.Peft.AdaLora;
using VlPeft.Peft.Lora;
using VlPeft.Tests.Peft;
using VlPeft.Training;
using static TorchSharp.torch;

namespace VlPeft.Tests.Training;

public class TrainerTests
{
    /// <summary>Regression on fixed random data; validation metric = −MSE on held-out rows.</summary>
    sealed class RegressionTask : ITrainingTask
    {
        readonly ToyModel model;
        readonly Tensor x, y, valX, valY;
        public Func<int, double>? MetricOverride;
        public int? NanAtCall;
        int calls, validations;

        public RegressionTask(ToyModel model)
        {
            this.model = model;
            var g = new Generator(seed: 123);
            x = torch.randn(new long[] { 24, ToyModel.Hidden }, generator: g);
            y = torch.randn(new long[] { 24, 10 }, generator: g);
            valX = torch.randn(new long[] { 8, ToyModel.Hidden }, generator: g);
            valY = torch.randn(new long[] { 8, 10 }, generator: g);
        }

        public int TrainCount => 24;

        public Tensor Loss(IReadOnlyList<int> examples, int epoch, Random random)
        {
            calls++;
            var index = torch.tensor(examples.Select(i => (long)i).ToArray());
            var loss = (model.call(x.index_select(0, index)) - y.index_select(0, index)).square().mean();
            return NanAtCall == calls ? loss * double.NaN : loss;
        }

        public double Validate() => MetricOverride?.Invoke(validations++) ?? -(model.call(valX) - valY).square().mean().item<float>();
    }

    static (ToyModel Model, PeftModel Peft) Build(Dictionary<string, Tensor>? initial = null, PeftConfig? config = null)
    {
        var model = new ToyModel();
        var peft = PeftModel.Create(model, config ?? new LoraConfig { R = 2, TargetModules = ModuleSelector.FromNames("query", "value") });
        if (initial != null)
            using (torch.no_grad())
                foreach (var (name, p) in model.named_parameters()) p.copy_(initial[name]);
        return (model, peft);
    }

    static Dictionary<string, Tensor> Snapshot(nn.Module m) => m.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    static readonly TrainerOptions Options = new()
    {
        LearningRate = 0.01, Epochs = 3, BatchSize = 4, GradientAccumulation = 2, MaxGradNorm = 1.0, Patience = null, LogEvery = 1, Seed = 7,
    };

    [Fact]
    public void A_run_killed_mid_epoch_and_resumed_ends_bit_identical()
    {
        var (a, peftA) = Build();
        var initial = Snapshot(a);
        using var dirA = new TempDirectory();
        new Trainer(a, peftA, new RegressionTask(a), Options, new RunDirectory(dirA.Path)).Run();

        var (b, peftB) = Build(initial);
        using var dirB = new TempDirectory();
        var interrupted = new Trainer(b, peftB, new RegressionTask(b), Options with { InterruptAfterSteps = 4 }, new RunDirectory(dirB.Path));
        Assert.Equal(3, interrupted.StepsPerEpoch); // 6 micro-batches, 2 per step
        Assert.Throws<TrainingInterruptedException>(() => interrupted.Run());

        // A fresh process would rebuild the model from the base and resume from the checkpoint.
        var (c, peftC) = Build(initial);
        var result = new Trainer(c, peftC, new RegressionTask(c), Options, new RunDirectory(dirB.Path)).Run(resume: true);
        Assert.Equal(3, result.State.Epoch);
        var final = Snapshot(a);
        foreach (var (name, p) in c.named_parameters())
            Assert.True(torch.equal(final[name], p).all().item<bool>(), $"{name} differs after resume");
        Assert.Equal(File.ReadAllLines(Path.Combine(dirA.Path, "metrics.jsonl")).Length, File.ReadAllLines(Path.Combine(dirB.Path, "metrics.jsonl")).Length);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(dirA.Path, "tensorboard"), "events.out.tfevents.*", SearchOption.AllDirectories));
    }

    [Fact]
    public void Early_stopping_keeps_the_best_epoch_and_loads_it()
    {
        var (model, peft) = Build();
        var task = new RegressionTask(model) { MetricOverride = i => new[] { 1.0, 3.0, 2.0, 2.5, 1.0, 9.0 }[i] };
        using var dir = new TempDirectory();
        var trainer = new Trainer(model, peft, task, Options with { Epochs = 6, Patience = 2 }, new RunDirectory(dir.Path));
        var result = trainer.Run();
        Assert.Equal(4, result.State.Epoch);            // epochs 3 and 4 did not beat epoch 2: stop after 4
        Assert.Equal(1, result.State.BestEpoch);
        Assert.Equal(3.0, result.State.BestMetric);
        var best = VlPeft.Tensors.SafetensorsFile.Open(Path.Combine(dir.Path, "checkpoints", "best", "trainable.safetensors"));
        foreach (var (name, p) in trainer.Trainable())
            Assert.True(torch.equal(best.ReadTensor(name), p).all().item<bool>(), name);
        var lines = File.ReadAllLines(Path.Combine(dir.Path, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(new[] { 1.0, 3.0, 2.0, 2.5 }, lines.Where(l => l["val_metric"] != null).Select(l => l["val_metric"]!.GetValue<double>()));
    }

    [Fact]
    public void A_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint()
    {
        var (model, peft) = Build();
        using var dir = new TempDirectory();
        var task = new RegressionTask(model) { NanAtCall = 8 }; // second epoch
        var e = Assert.Throws<TrainingDivergedException>(() => new Trainer(model, peft, task, Options, new RunDirectory(dir.Path)).Run());
        Assert.Contains("loss became NaN at epoch 2", e.Message);
        Assert.NotNull(TrainingCheckpoint.Find(Path.Combine(dir.Path, "checkpoints", "last")));
    }

    [Fact]
    public void Adalora_reaches_its_budget_through_the_trainer()
    {
        using var dir = new TempDirectory();
        var probe = new Trainer(new ToyModel(), null, new RegressionTask(new ToyModel()), Options, new RunDirectory(dir.File("probe")));
        int total = probe.StepsPerEpoch * Options.Epochs;
        var config = new AdaLoraConfig { TargetModules = ModuleSelector.FromNames("query", "value"), InitR = 6, TargetR = 2, TotalStep = total, Tinit = 1, Tfinal = 2 };
        var (model, peft) = Build(config: config);
        new Trainer(model, peft, new RegressionTask(model), Options, new RunDirectory(dir.File("run"))).Run();
        Assert.Equal(6 * 2, ((VlPeft.Peft.AdaLora.AdaLoraTuner)peft.Tuner()).Allocator!.FinalRanks().Values.Sum()); // 6 adapted matrices × target_r 2
    }

    [Fact]
    public void An_adalora_run_resumes_bit_identical_with_its_allocator_state()
    {
        using var dir = new TempDirectory();
        var probe = new Trainer(new ToyModel(), null, new RegressionTask(new ToyModel()), Options, new RunDirectory(dir.File("probe")));
        var config = new AdaLoraConfig { TargetModules = ModuleSelector.FromNames("query", "value"), InitR = 6, TargetR = 2, TotalStep = probe.StepsPerEpoch * Options.Epochs, Tinit = 1, Tfinal = 2 };
        var (a, peftA) = Build(config: config);
        var initial = Snapshot(a);
        new Trainer(a, peftA, new RegressionTask(a), Options, new RunDirectory(dir.File("a"))).Run();

        var (b, peftB) = Build(initial, config);
        Assert.Throws<TrainingInterruptedException>(() => new Trainer(b, peftB, new RegressionTask(b), Options with { InterruptAfterSteps = 5 }, new RunDirectory(dir.File("b"))).Run());
        var (c, peftC) = Build(initial, config);
        new Trainer(c, peftC, new RegressionTask(c), Options, new RunDirectory(dir.File("b"))).Run(resume: true);
        var final = Snapshot(a);
        foreach (var (name, p) in c.named_parameters())
            Assert.True(torch.equal(final[name], p).all().item<bool>(), $"{name} differs after resume");
        Assert.Equal(((VlPeft.Peft.AdaLora.AdaLoraTuner)peftA.Tuner()).Allocator!.FinalRanks(), ((VlPeft.Peft.AdaLora.AdaLoraTuner)peftC.Tuner()).Allocator!.FinalRanks());
    }

    [Theory]
    [InlineData("linear_decay_lr", 0, 0, 1e-4)]
    [InlineData("linear_decay_lr", 99, 5, 1e-4 * (1 - 5.0 / 15))]    // set once per epoch
    [InlineData("linear_warmup_cosine_lr", 4, 0, 1e-4 * 5 / 10)]     // warmup: (step + 1)/warmup
    [InlineData("linear_warmup_cosine_lr", 55, 0, 1e-4 * 0.5 * (1 + 0.7071067811865476))] // progress 45/180 → cos(π/4)
    [InlineData("linear_warmup_linear_lr", 100, 0, 1e-4 * (1 - 90.0 / 180))]
    public void Schedules_follow_their_formulas(string schedule, int step, int epoch, double expected) =>
        Assert.Equal(expected, LearningRateSchedule.At(schedule, 1e-4, 0, step, epoch, totalSteps: 190, maxEpochs: 15, warmupSteps: 10), 12);

    [Fact]
    public void The_model_ends_on_the_best_epoch_unless_the_last_one_is_kept()
    {
        var (a, peftA) = Build();
        var initial = Snapshot(a);
        using var dirA = new TempDirectory();
        // Epoch 1 validates best: the default reloads it; KeepLast (LaVIN) leaves epoch 3's weights.
        new Trainer(a, peftA, new RegressionTask(a) { MetricOverride = i => new[] { 5.0, 1.0, 2.0 }[i] }, Options, new RunDirectory(dirA.Path)).Run();
        var (b, peftB) = Build(initial);
        using var dirB = new TempDirectory();
        new Trainer(b, peftB, new RegressionTask(b) { MetricOverride = i => new[] { 5.0, 1.0, 2.0 }[i] }, Options with { KeepLast = true }, new RunDirectory(dirB.Path)).Run();
        var (c, peftC) = Build(initial);
        using var dirC = new TempDirectory();
        new Trainer(c, peftC, new RegressionTask(c), Options with { Epochs = 1 }, new RunDirectory(dirC.Path)).Run();
        var best = Snapshot(a);
        var last = Snapshot(b);
        var epochOne = Snapshot(c);
        var lora = best.Keys.First(k => k.Contains("lora_B"));
        Assert.True(torch.equal(epochOne[lora], best[lora]).all().item<bool>());
        Assert.False(torch.equal(best[lora], last[lora]).all().item<bool>());
    }

    /// <summary>MAE/LaVIN lr_sched: epochs 20, warmup 2, read at the fractional epoch of each optimizer step.</summary>
    [Theory]
    [InlineData(0.0, 0.0)]                                             // the very first step has lr 0, as in LaVIN
    [InlineData(0.5, 1e-3 * 0.5 / 2)]
    [InlineData(2.0, 1e-3)]
    [InlineData(11.0, 1e-5 + (1e-3 - 1e-5) * 0.5)]                     // halfway through the cosine: cos(π/2) = 0
    [InlineData(20.0, 1e-5)]
    public void Half_cycle_cosine_warms_up_linearly_then_follows_half_a_cosine(double fractionalEpoch, double expected) =>
        Assert.Equal(expected, LearningRateSchedule.At(LearningRateSchedule.HalfCycleCosine, 1e-3, 1e-5, 0, (int)fractionalEpoch, 0, maxEpochs: 20, warmupSteps: 0,
            fractionalEpoch, warmupEpochs: 2), 12);

    [Theory]
    [InlineData("language_model.model.layers.0.adapter_before_attention.default.conv_A.weight", 2, true)]
    [InlineData("language_model.model.layers.0.adapter_before_attention.default.conv_A.bias", 1, false)]
    [InlineData("adapter_modality_embedding.weight", 2, true)]
    [InlineData("vision_model.post_layernorm.weight", 1, false)]      // 1-D
    [InlineData("ln_vision.weight", 2, true)]                          // unlike LAVIS, a name with "ln" still decays
    public void Weight_decay_follows_the_timm_rule_lavin_uses(string name, int dims, bool decays) =>
        Assert.Equal(decays, OptimizerFactory.Decays(name, torch.zeros(Enumerable.Repeat(2L, dims).ToArray()), OptimizerFactory.TimmRule));

    [Theory]
    [InlineData("qformer.encoder.layer.0.attention.attention.query.lora_A.default.weight", 2, true)]
    [InlineData("qformer.encoder.layer.0.attention.attention.query.bias", 1, false)]
    [InlineData("language_projection.bias", 1, false)]
    [InlineData("qformer.encoder.layer.0.output.LayerNorm.weight", 1, false)]
    [InlineData("query_tokens", 3, true)]
    [InlineData("ln_vision.weight", 2, false)]                     // "ln" in the name (LAVIS naming)
    public void Weight_decay_follows_the_lavis_rule(string name, int dims, bool decays) =>
        Assert.Equal(decays, OptimizerFactory.Decays(name, torch.zeros(Enumerable.Repeat(2L, dims).ToArray())));

    [Fact]
    public void Damaged_run_directories_give_clear_errors_naming_the_file_and_leftovers_are_removed()
    {
        using var dir = new TempDirectory();
        var (a, peftA) = Build();
        var initial = Snapshot(a);
        var run = new RunDirectory(dir.Path);
        new Trainer(a, peftA, new RegressionTask(a), Options, run).Run();
        string checkpoints = Path.GetDirectoryName(run.LastCheckpoint)!;

        // A kill leaves a half-written checkpoint folder and a cut metrics line: both are cleaned up on resume.
        Directory.CreateDirectory(run.LastCheckpoint + ".tmp-deadbeef");
        File.AppendAllText(run.MetricsFile, "{\"step\": 9, \"lo");
        var (b, peftB) = Build(initial);
        new Trainer(b, peftB, new RegressionTask(b), Options, new RunDirectory(dir.Path)).Run(resume: true);
        Assert.Empty(Directory.GetDirectories(checkpoints, "*.tmp-*"));
        Assert.All(File.ReadAllLines(run.MetricsFile), line => JsonNode.Parse(line));

        // A damaged line before the end is an error naming the file and the line.
        var lines = File.ReadAllLines(run.MetricsFile).ToList();
        lines.Insert(1, "not json");
        File.WriteAllLines(run.MetricsFile, lines);
        var (c, peftC) = Build(initial);
        var metrics = Assert.Throws<BadInputException>(() => new Trainer(c, peftC, new RegressionTask(c), Options, new RunDirectory(dir.Path)).Run(resume: true));
        Assert.Contains("line 2 is not a metrics record", metrics.Message);
        Assert.Equal(run.MetricsFile, metrics.File);

        // A resume with another rank: the checkpoint tensor's shape is named, not a native copy error.
        var (d, peftD) = Build(config: new LoraConfig { R = 3, TargetModules = ModuleSelector.FromNames("query", "value") });
        var rank = Assert.Throws<BadInputException>(() => new Trainer(d, peftD, new RegressionTask(d), Options, new RunDirectory(dir.Path)).Run(resume: true));
        Assert.Contains("different PEFT settings", rank.Message);

        // Damaged optimizer state and state.json.
        File.WriteAllBytes(Path.Combine(run.LastCheckpoint, "optimizer.bin"), new byte[] { 1, 2, 3 });
        var (e, peftE) = Build(initial);
        var optimizer = Assert.Throws<BadInputException>(() => new Trainer(e, peftE, new RegressionTask(e), Options, new RunDirectory(dir.Path)).Run(resume: true));
        Assert.Equal(Path.Combine(run.LastCheckpoint, "optimizer.bin"), optimizer.File);
        File.WriteAllText(Path.Combine(run.LastCheckpoint, "state.json"), "");
        var (f, peftF) = Build(initial);
        var state = Assert.Throws<BadInputException>(() => new Trainer(f, peftF, new RegressionTask(f), Options, new RunDirectory(dir.Path)).Run(resume: true));
        Assert.Contains("checkpoint state is damaged", state.Message);
    }

    [Fact]
    public void One_writer_per_run_directory_and_the_lock_names_its_holder()
    {
        using var dir = new TempDirectory();
        var run = new RunDirectory(dir.Path);
        var held = run.Lock();
        var second = Assert.Throws<BadInputException>(() => new RunDirectory(dir.Path).Lock());
        Assert.Contains($"in use by process {Environment.ProcessId}", second.Message);
        held.Dispose();
        new RunDirectory(dir.Path).Lock().Dispose();   // released with its holder
    }
}
