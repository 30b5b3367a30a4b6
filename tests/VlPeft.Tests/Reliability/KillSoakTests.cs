using System.Diagnostics;
using VlPeft.Data.Synthetic;
using VlPeft.Training;

namespace VlPeft.Tests.Reliability;

/// <summary>
/// The kill -9 soak: a real `vlpeft train` process is killed ten times, five at random moments and five the instant a
/// checkpoint write has begun (a temporary checkpoint folder exists), and resumed each time; the last checkpoint must stay
/// readable throughout, and the run must end with the uninterrupted run's weights, byte for byte. Full fine-tuning of the
/// tiny LaVIN makes each checkpoint (weights + Adam moments) large enough for a kill to land inside its write.
/// </summary>
public class KillSoakTests
{
    static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "VlPeft.Cli");

    static Process Start(params string[] args)
    {
        var info = new ProcessStartInfo(Cli) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Whether a checkpoint write has begun; the folder may vanish under us (an --overwrite run clears it at start).</summary>
    static bool WriteBegun(string checkpoints)
    {
        try
        {
            return Directory.EnumerateDirectories(checkpoints, "*.tmp-*").Any();
        }
        catch (DirectoryNotFoundException)
        {
            return false;
        }
    }

    [SlowFact]
    [Trait("Category", "Slow")]
    public void A_run_killed_ten_times_and_resumed_ends_with_the_uninterrupted_bytes()
    {
        using var dir = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 240, Val = 8, Test = 8, Seed = 3 }, dir.File("sqa"));
        File.WriteAllText(dir.File("soak.yaml"), """
            task: scienceqa
            image_only: false
            peft:
              preset: full             # every weight and its Adam moments in each checkpoint: writes long enough to be hit
            training:
              lr: 0.0005
              epochs: 5
              batch_size: 8
              patience: null
              seed: 5
              augment: false
            """);
        string[] Args(string run) => new[] { "train", "--config", dir.File("soak.yaml"), "--data", dir.File("sqa"), "--model", RepoPath.Of("models", "tiny-lavin"), "--out", run };

        using (var reference = Start(Args(dir.File("reference"))))
        {
            Assert.True(reference.WaitForExit(300_000), "the uninterrupted run did not finish");
            Assert.Equal(0, reference.ExitCode);
        }

        string run = dir.File("killed");
        var last = Path.Combine(run, "checkpoints", "last");
        var random = new Random(11);
        int atRandom = 0, inWrite = 0, attempts = 0;
        bool finished = false;
        while ((atRandom < 5 || inWrite < 5) && attempts++ < 40)
        {
            var args = Args(run).ToList();
            // A run that ended by itself has nothing left to kill: start it again from scratch.
            if (!finished && TrainingCheckpoint.Find(last) is not null) args.Add("--resume");
            else if (Directory.Exists(run)) args.Add("--overwrite");
            using var process = Start(args.ToArray());
            bool intoWrite = atRandom >= 5 || (inWrite < 5 && attempts % 2 == 0);
            if (!intoWrite) Thread.Sleep(1000 + random.Next(6000));
            else
            {
                // The instant a checkpoint write has begun: a temporary folder beside checkpoints/last or best.
                var checkpoints = Path.Combine(run, "checkpoints");
                while (!process.HasExited && !WriteBegun(checkpoints))
                    Thread.SpinWait(100);
            }
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                if (intoWrite) inWrite++; else atRandom++;
            }
            process.WaitForExit();
            finished = process.ExitCode == 0;
            // Whatever the moment, the last checkpoint is absent or complete (the next resume reads it).
            if (TrainingCheckpoint.Find(last) is string found)
                Assert.True(File.Exists(Path.Combine(found, "state.json")), $"attempt {attempts}: {found} has no state.json");
        }
        Assert.True(atRandom >= 5 && inWrite >= 5, $"kills: {atRandom} at random moments, {inWrite} inside a checkpoint write, in {attempts} attempts");

        var resumeArgs = Args(run).ToList();
        resumeArgs.Add(!finished && TrainingCheckpoint.Find(last) is not null ? "--resume" : "--overwrite");
        using (var final = Start(resumeArgs.ToArray()))
        {
            Assert.True(final.WaitForExit(300_000), "the resumed run did not finish");
            Assert.Equal(0, final.ExitCode);
        }
        Assert.Equal(File.ReadAllBytes(dir.File("reference/model/model.safetensors")), File.ReadAllBytes(Path.Combine(run, "model", "model.safetensors")));
        Assert.Empty(Directory.GetDirectories(Path.Combine(run, "checkpoints"), "*.tmp-*"));
    }
}
