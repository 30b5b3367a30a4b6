using System.Diagnostics;
using VlPeft.Data.Synthetic;
using VlPeft.Training;

namespace VlPeft.Tests.Distributed;

/// <summary>
/// Data-parallel training through Open MPI: real `mpirun -np 2 vlpeft …` processes on loopback against one-process runs.
/// Every process runs one thread (OMP_NUM_THREADS=1), so both sides use the same kernels with the same reduction order;
/// with two micro-batches per step, one on each rank, the all-reduced gradient a + b is the sum one process accumulates,
/// so the adapters must be equal byte for byte (with more threads they differ by ~1e-5 from BLAS reduction order).
/// </summary>
public class MpiTrainingTests
{
    static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "VlPeft.Cli");

    const string Config = """
        name: mpi
        task: scienceqa
        image_only: false
        model:
          preset: tiny-instructblip
        peft:
          preset: qformer-lora-all
          r: 4
        training:
          lr: 0.002
          schedule: linear_decay_lr
          epochs: {0}
          batch_size: 8
          gradient_accumulation: {1}
          patience: null
          seed: 42
          augment: false
        """;

    static (int Code, string Out, string Error) Run(string file, IEnumerable<string> args, int timeoutSeconds = 300, Action<Process>? whileRunning = null)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["OMP_NUM_THREADS"] = "1";
        info.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";           // CI containers run as root; Open MPI refuses that by default
        info.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        whileRunning?.Invoke(process);
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{Path.GetFileName(file)} {string.Join(' ', args)} did not finish in {timeoutSeconds} s");
        }
        return (process.ExitCode, Plain(output.Result), error.Result);
    }

    /// <summary>Without terminal control sequences: .NET writes keypad-mode codes to the pty Open MPI gives each rank's stdout.</summary>
    static string Plain(string text) => System.Text.RegularExpressions.Regex.Replace(text, @"\x1b(\[[?0-9;]*[A-Za-z]|[=>])", "");

    static string Mpirun =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("mpirun is not installed (Debian: openmpi-bin libopenmpi-dev; .ci/run installs them)");

    static IEnumerable<string> Ranks(int n, params string[] command) =>
        new[] { "--oversubscribe", "-x", "OMP_NUM_THREADS", "-np", n.ToString(), Cli }.Concat(command);

    static string[] Train(TempDirectory dir, string config, string run, params string[] extra) =>
        new[] { "train", "--config", dir.File(config), "--data", dir.File("sqa"), "--model", RepoPath.Of("models", "tiny-instructblip"), "--out", dir.File(run) }.Concat(extra).ToArray();

    static TempDirectory Setup(int train, int epochs, int accumulation)
    {
        var dir = new TempDirectory();
        // 84 examples in micro-batches of 8: the last micro-batch holds 4, and each epoch's last step has one micro-batch, so rank 1 idles in it.
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = train, Val = 24, Test = 24, Seed = 3 }, dir.File("sqa"));
        File.WriteAllText(dir.File("run.yaml"), string.Format(Config, epochs, accumulation));
        return dir;
    }

    static void AssertOk((int Code, string Out, string Error) r) => Assert.True(r.Code == 0, $"exit {r.Code}\n{r.Out}\n{r.Error}");

    [SlowFact]
    [Trait("Category", "Slow")]
    public void Two_ranks_train_the_adapter_one_process_trains_and_evaluate_to_the_same_scores()
    {
        using var dir = Setup(train: 84, epochs: 2, accumulation: 2);
        var one = Run(Cli, Train(dir, "run.yaml", "one"));
        AssertOk(one);
        var two = Run(Mpirun, Ranks(2, Train(dir, "run.yaml", "two")));
        AssertOk(two);

        Assert.Equal(File.ReadAllBytes(dir.File("one/adapter/adapter_model.safetensors")), File.ReadAllBytes(dir.File("two/adapter/adapter_model.safetensors")));
        // Validation (sharded: chunks of 16 records alternate between the ranks) and test scores, and the predictions file.
        string Val(string run) => string.Join("\n", File.ReadLines(dir.File($"{run}/metrics.jsonl")).Where(l => l.Contains("val_metric")));
        Assert.Equal(Val("one"), Val("two"));
        Assert.Equal(File.ReadAllText(dir.File("one/predictions.json")), File.ReadAllText(dir.File("two/predictions.json")));
        string Summary(string output) => output.Split('\n')[0].Split("; ")[2];   // "test NN.NN (accuracy)"
        Assert.Equal(Summary(one.Out), Summary(two.Out));
        Assert.Single(two.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("mpi: trainable"));   // rank 0 alone reports
        Assert.Contains("allreduce_ms", File.ReadAllText(dir.File("two/metrics.jsonl")));

        // `eval` sharded over 3 ranks (uneven shards) prints the same accuracy and writes the same predictions.
        string[] Eval(string predictions) => new[] { "eval", "--config", dir.File("run.yaml"), "--data", dir.File("sqa"), "--model", RepoPath.Of("models", "tiny-instructblip"),
            "--adapter", dir.File("one/adapter"), "--predictions-out", dir.File(predictions) };
        var evalOne = Run(Cli, Eval("eval-one.json"));
        var evalThree = Run(Mpirun, Ranks(3, Eval("eval-three.json")));
        AssertOk(evalOne);
        AssertOk(evalThree);
        Assert.Equal(evalOne.Out.Split('\n')[0], evalThree.Out.Split('\n')[0]);
        Assert.Equal(File.ReadAllText(dir.File("eval-one.json")), File.ReadAllText(dir.File("eval-three.json")));
    }

    [SlowFact]
    [Trait("Category", "Slow")]
    public void AdaLoRA_with_gradient_clipping_allocates_the_same_ranks_on_two_ranks_as_in_one_process()
    {
        using var dir = Setup(train: 84, epochs: 2, accumulation: 2);
        // Importance scores come from the all-reduced gradients; clipping sees their global norm (a low max_grad_norm clips every step).
        File.WriteAllText(dir.File("ada.yaml"), File.ReadAllText(dir.File("run.yaml"))
            .Replace("  r: 4\n", "  peft_type: ADALORA\n  init_r: 6\n  target_r: 3\n  tinit: 2\n  tfinal: 2\n  deltaT: 2\n  lora_alpha: 8\n")
            .Replace("  augment: false", "  augment: false\n  max_grad_norm: 0.05"));
        AssertOk(Run(Cli, Train(dir, "ada.yaml", "one")));
        AssertOk(Run(Mpirun, Ranks(2, Train(dir, "ada.yaml", "two"))));
        Assert.Contains("\"rank_pattern\"", File.ReadAllText(dir.File("one/adapter/adapter_config.json")));
        Assert.Equal(File.ReadAllText(dir.File("one/adapter/adapter_config.json")), File.ReadAllText(dir.File("two/adapter/adapter_config.json")));
        Assert.Equal(File.ReadAllBytes(dir.File("one/adapter/adapter_model.safetensors")), File.ReadAllBytes(dir.File("two/adapter/adapter_model.safetensors")));
    }

    [SlowFact]
    [Trait("Category", "Slow")]
    public void A_killed_rank_ends_the_job_and_the_resumed_run_ends_with_the_one_process_adapter()
    {
        using var dir = Setup(train: 240, epochs: 5, accumulation: 2);
        AssertOk(Run(Cli, Train(dir, "run.yaml", "one")));
        string last = dir.File("killed/checkpoints/last");
        var killed = Run(Mpirun, Ranks(2, Train(dir, "run.yaml", "killed")), whileRunning: mpirun =>
        {
            // Once the first epoch's checkpoint is on disk, kill -9 one rank (a child of mpirun).
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (TrainingCheckpoint.Find(last) is null && !mpirun.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(20);
            var rank = Directory.GetDirectories("/proc").Select(p => Path.GetFileName(p)).Where(p => int.TryParse(p, out _))
                .Select(int.Parse).First(pid => ParentOf(pid) == mpirun.Id);
            Process.GetProcessById(rank).Kill();
        });
        Assert.NotEqual(0, killed.Code);
        Assert.Contains("signal 9", killed.Error);   // mpirun names the rank that died and ends the others
        Assert.NotNull(TrainingCheckpoint.Find(last));

        AssertOk(Run(Mpirun, Ranks(2, Train(dir, "run.yaml", "killed", "--resume"))));
        Assert.Equal(File.ReadAllBytes(dir.File("one/adapter/adapter_model.safetensors")), File.ReadAllBytes(dir.File("killed/adapter/adapter_model.safetensors")));
    }

    static int ParentOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);   // after "pid (comm) state"
        }
        catch (IOException)
        {
            return -1;
        }
    }

    [SlowFact]
    [Trait("Category", "Slow")]
    public void Ranks_with_different_configs_or_an_accumulation_that_does_not_divide_are_refused()
    {
        using var dir = Setup(train: 32, epochs: 1, accumulation: 2);
        File.WriteAllText(dir.File("other.yaml"), File.ReadAllText(dir.File("run.yaml")).Replace("lr: 0.002", "lr: 0.003"));
        // MPMD launch: rank 0 and rank 1 get different experiment files.
        var mismatch = Run(Mpirun, new[] { "--oversubscribe", "-x", "OMP_NUM_THREADS", "-np", "1", Cli }.Concat(Train(dir, "run.yaml", "a"))
            .Concat(new[] { ":", "-np", "1", Cli }).Concat(Train(dir, "other.yaml", "a")));
        Assert.NotEqual(0, mismatch.Code);
        Assert.Contains("ranks disagree on the experiment (resolved config): rank 1 differs from rank 0", mismatch.Error);

        File.WriteAllText(dir.File("odd.yaml"), string.Format(Config, 1, 1));
        var odd = Run(Mpirun, Ranks(2, Train(dir, "odd.yaml", "b")));
        Assert.NotEqual(0, odd.Code);
        Assert.Contains("training.gradient_accumulation (1) must be a multiple of the number of ranks (2)", odd.Error);
        Assert.False(File.Exists(dir.File("b/checkpoints/last/state.json")));
    }
}
