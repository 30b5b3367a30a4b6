using System.Security.Cryptography;
using VlPeft.Data;
using VlPeft.Data.Captions;
using VlPeft.Data.IconQa;
using VlPeft.Data.ScienceQa;
using VlPeft.Data.Synthetic;
using VlPeft.Evaluation.Metrics;
using VlPeft.Imaging;
using VlPeft.Tests.Cli;

namespace VlPeft.Tests.Data;

public class SyntheticSuiteTests
{
    static string Hash(string directory) => Convert.ToHexString(SHA256.HashData(
        Directory.GetFiles(directory, "*", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal)
            .SelectMany(f => System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(directory, f)).Concat(File.ReadAllBytes(f))).ToArray()));

    [Fact]
    public void Scienceqa_suite_is_deterministic_balanced_and_read_by_the_official_reader()
    {
        using var a = new TempDirectory();
        using var b = new TempDirectory();
        var options = new SyntheticOptions { Task = "scienceqa", Train = 120, Val = 30, Test = 60, Seed = 9 };
        var summary = SyntheticSuite.Generate(options, a.Path);
        SyntheticSuite.Generate(options, b.Path);
        Assert.Equal(Hash(a.Path), Hash(b.Path));

        var test = ScienceQaReader.Read(a.Path, "test", options: new ReadOptions { RequireImages = true }).Records;
        Assert.Equal(60, test.Count);
        var train = ScienceQaReader.Read(a.Path, "train").Records;
        // Balanced answer positions: each position of 2- and 3-choice questions within a few of its share.
        foreach (var group in train.GroupBy(r => r.Choices.Count))
            foreach (var position in Enumerable.Range(0, group.Key))
                Assert.InRange(group.Count(r => r.Answer == position), group.Count() / group.Key - 4, group.Count() / group.Key + 4);
        // Every category of the official score is populated.
        var perfect = test.ToDictionary(r => r.Id, r => r.Answer);
        var metrics = ScienceQaScorer.Score(test, perfect).Metrics;
        foreach (var (_, key) in ScienceQaScorer.Columns) Assert.Equal("100.00", metrics[key]);
        Assert.Contains(test, r => r.HasText && r.HasImage);
        Assert.Contains(test, r => !r.HasText && !r.HasImage);
        // The images decode with the real pipeline.
        Assert.Equal(new long[] { 3, 64, 64 }, ImagePipeline.Decode(test.First(r => r.HasImage).ImagePath!).shape);
        // The image is needed: the text-only baseline stays near chance.
        Assert.InRange(summary.BlindAccuracy, 0, summary.ChanceAccuracy + 15);
    }

    [Theory]
    [InlineData("iconqa")]
    [InlineData("scienceqa")]
    public void Text_only_baselines_stay_near_chance_so_answers_need_the_image(string task)
    {
        using var dir = new TempDirectory();
        // Enough questions per family that a leak through the answer's wording or position would show:
        // with one fixed cycle of answer positions the position prior scored ≈ 100% on the IconQA-like suite.
        var summary = SyntheticSuite.Generate(new SyntheticOptions { Task = task, Train = 300, Val = 30, Test = 150, Seed = 3, ImageSize = 16 }, dir.Path);
        Assert.InRange(summary.BlindAccuracy, 0, summary.ChanceAccuracy + 10);
    }

    [Fact]
    public void Count_options_do_not_give_the_count_away()
    {
        // Over many count and hint-rule questions, each set of options has every member right about
        // equally often (1/3 ± sampling noise): the options alone carry no information.
        var random = new Random(11);
        var balancer = new AnswerBalancer();
        var questions = Enumerable.Range(0, 1200).Select(i => QuestionFactory.Make(i % 2 == 0 ? "count" : "hint-rule", random, balancer)).ToList();
        foreach (var group in questions.GroupBy(q => string.Join(",", q.Choices.Order())))
        {
            Assert.True(group.Count() > 300, $"options {group.Key}: {group.Count()}");
            foreach (var option in group.First().Choices)
                Assert.InRange(group.Count(q => q.Choices[q.Answer] == option) / (double)group.Count(), 0.25, 0.42);
        }
    }

    [Fact]
    public void Iconqa_and_caption_suites_are_read_by_their_readers()
    {
        using var icon = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "iconqa", Train = 20, Val = 5, Test = 10, Seed = 2 }, icon.Path);
        var records = IconQaReader.Read(icon.Path, "test", new ReadOptions { RequireImages = true }).Records;
        Assert.Equal(10, records.Count);
        Assert.All(records, r => Assert.InRange(r.Answer, 0, r.Choices.Count - 1));

        using var captions = new TempDirectory();
        SyntheticSuite.Generate(new SyntheticOptions { Task = "captions", Train = 4, Val = 2, Test = 3, Seed = 2 }, captions.Path);
        var test = CaptionReader.Read(Path.Combine(captions.Path, "dataset_synth.json"), "test");
        Assert.Equal(3, test.Count);
        Assert.All(test, r => Assert.Equal(5, r.References.Count));
        Assert.All(test, r => Assert.True(File.Exists(Path.Combine(captions.Path, r.ImagePath!))));
    }

    [Fact]
    public void Cli_reports_the_blind_check()
    {
        using var dir = new TempDirectory();
        var (code, output, error) = CliRunner.Run("data", "synth", "--task", "scienceqa", "--out", dir.Path, "--train", "40", "--val", "10", "--test", "20");
        Assert.True(code == 0, error);
        Assert.Contains("blind check", output);
        Assert.True(File.Exists(dir.File("problems.json")) && File.Exists(dir.File("pid_splits.json")));
        Assert.Equal(2, CliRunner.Run("data", "synth", "--task", "scienceqa", "--out", dir.Path, "--train", "0").ExitCode);
    }
}
