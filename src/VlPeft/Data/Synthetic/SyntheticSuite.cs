using System.Text.Json;
using System.Text.Json.Nodes;
using VlPeft.Imaging;

namespace VlPeft.Data.Synthetic;

/// <summary>What to generate.</summary>
public sealed record SyntheticOptions
{
    /// <summary>scienceqa, iconqa, captions or vqav2.</summary>
    public required string Task { get; init; }
    public int Train { get; init; } = 600;
    public int Val { get; init; } = 150;
    public int Test { get; init; } = 150;
    public int Seed { get; init; } = 1;
    public int ImageSize { get; init; } = 64;
}

/// <summary>What was generated, and how a text-only baseline fares on it (it should stay near chance).</summary>
public sealed record SyntheticSummary(string Task, string Directory, int Train, int Val, int Test, double BlindAccuracy, double ChanceAccuracy);

/// <summary>
/// The built-in synthetic visual-reasoning suite, written in the official on-disk formats so the
/// real readers read it: ScienceQA (problems.json + pid_splits.json + images/&lt;split&gt;/&lt;pid&gt;/image.png),
/// IconQA (&lt;split&gt;/choose_txt/&lt;qid&gt;/{data.json,image.png}) and Karpathy captions
/// (dataset_synth.json + images/) and VQAv2 in the VL-T5 Karpathy layout (karpathy_&lt;split&gt;.json +
/// trainval_ans2label.json + images/). Deterministic for a seed.
/// </summary>
public static class SyntheticSuite
{
    internal static readonly string[] Splits = { "train", "val", "test" };

    public static SyntheticSummary Generate(SyntheticOptions options, string directory)
    {
        const int MaxRecords = 1_000_000;
        if (options.Train < 1 || options.Val < 1 || options.Test < 1) throw new BadInputException("--train, --val and --test must be at least 1");
        if (options.Train > MaxRecords || options.Val > MaxRecords || options.Test > MaxRecords)
            throw new BadInputException($"--train, --val and --test must be at most {MaxRecords:N0} (each record writes an image)");
        if (options.ImageSize is < 16 or > 1024) throw new BadInputException($"the image size must be between 16 and 1024, got {options.ImageSize}");
        Directory.CreateDirectory(directory);
        var random = new Random(options.Seed);
        var counts = new[] { options.Train, options.Val, options.Test };
        return options.Task switch
        {
            "scienceqa" => WriteScienceQa(directory, counts, random, options.ImageSize),
            "iconqa" => WriteIconQa(directory, counts, random, options.ImageSize),
            "captions" => WriteCaptions(directory, counts, random, options.ImageSize),
            "vqav2" => SyntheticVqa.Write(directory, counts, random, options.ImageSize),
            _ => throw new BadInputException($"unknown synthetic task '{options.Task}' (scienceqa, iconqa, captions, vqav2)"),
        };
    }

    static SyntheticSummary WriteScienceQa(string root, int[] counts, Random random, int size)
    {
        var problems = new JsonObject();
        var splits = new JsonObject();
        var questions = new List<(string Split, SyntheticQuestion Q)>();
        int pid = 1;
        var balancer = new AnswerBalancer();
        for (int s = 0; s < 3; s++)
        {
            var ids = new JsonArray();
            for (int i = 0; i < counts[s]; i++, pid++)
            {
                // One in ten is text-only (ScienceQA's "no context" group); the rest need the image.
                string family = i % 10 == 9 ? "text" : QuestionFactory.ImageFamilies[i % QuestionFactory.ImageFamilies.Length];
                var q = QuestionFactory.Make(family, random, balancer);
                questions.Add((Splits[s], q));
                string id = pid.ToString();
                problems[id] = new JsonObject
                {
                    ["question"] = q.Question, ["choices"] = new JsonArray(q.Choices.Select(c => (JsonNode)c).ToArray()), ["answer"] = q.Answer,
                    ["hint"] = q.Hint, ["image"] = q.Scene is null ? null : "image.png", ["task"] = "closed choice", ["grade"] = q.Grade,
                    ["subject"] = q.Subject, ["topic"] = q.Topic, ["category"] = q.Family, ["skill"] = q.Family,
                    ["lecture"] = q.Lecture, ["solution"] = q.Solution, ["split"] = Splits[s],
                };
                if (q.Scene is not null)
                {
                    string folder = Path.Combine(root, "images", Splits[s], id);
                    Directory.CreateDirectory(folder);
                    PngWriter.Write(Path.Combine(folder, "image.png"), size, size, q.Scene.Render(size));
                }
                ids.Add(id);
            }
            splits[Splits[s]] = ids;
        }
        splits["trainval"] = new JsonArray(splits["train"]!.AsArray().Concat(splits["val"]!.AsArray()).Select(n => (JsonNode)n!.GetValue<string>()).ToArray());
        foreach (var s in Splits)
            splits["mini" + s] = new JsonArray(splits[s]!.AsArray().Take(Math.Max(1, splits[s]!.AsArray().Count / 10)).Select(n => (JsonNode)n!.GetValue<string>()).ToArray());
        WriteJson(Path.Combine(root, "problems.json"), problems);
        WriteJson(Path.Combine(root, "pid_splits.json"), splits);
        // The blind check covers the questions with an image (the text-only ones are meant to be answerable from text).
        var (blind, chance) = BlindBaseline.Evaluate(questions.Where(q => q.Split == "train" && q.Q.Scene != null).Select(q => q.Q).ToList(),
            questions.Where(q => q.Split == "test" && q.Q.Scene != null).Select(q => q.Q).ToList());
        return new SyntheticSummary("scienceqa", root, counts[0], counts[1], counts[2], blind, chance);
    }

    static SyntheticSummary WriteIconQa(string root, int[] counts, Random random, int size)
    {
        var questions = new List<(string Split, SyntheticQuestion Q)>();
        int qid = 1;
        var balancer = new AnswerBalancer();
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < counts[s]; i++, qid++)
            {
                string family = QuestionFactory.ImageFamilies[i % 5]; // IconQA has no hints: skip the hint-rule family
                var q = QuestionFactory.Make(family, random, balancer);
                questions.Add((Splits[s], q));
                string folder = Path.Combine(root, Splits[s], "choose_txt", qid.ToString());
                Directory.CreateDirectory(folder);
                WriteJson(Path.Combine(folder, "data.json"), new JsonObject
                {
                    ["question"] = q.Question, ["choices"] = new JsonArray(q.Choices.Select(c => (JsonNode)c).ToArray()), ["answer"] = q.Answer,
                    ["ques_type"] = "choose_txt", ["grade"] = q.Grade, ["label"] = q.Family,
                });
                PngWriter.Write(Path.Combine(folder, "image.png"), size, size, q.Scene!.Render(size));
            }
        var (blind, chance) = BlindBaseline.Evaluate(questions.Where(q => q.Split == "train").Select(q => q.Q).ToList(), questions.Where(q => q.Split == "test").Select(q => q.Q).ToList());
        return new SyntheticSummary("iconqa", root, counts[0], counts[1], counts[2], blind, chance);
    }

    static SyntheticSummary WriteCaptions(string root, int[] counts, Random random, int size)
    {
        var images = new JsonArray();
        var questions = Splits.ToDictionary(s => s, _ => new JsonArray());
        Directory.CreateDirectory(Path.Combine(root, "images"));
        int id = 0, sentence = 0;
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < counts[s]; i++, id++)
            {
                var scene = Scene.Draw(random, 1, 4);
                string filename = $"synth_{id:D6}.png";
                PngWriter.Write(Path.Combine(root, "images", filename), size, size, scene.Render(size));
                var sentences = new JsonArray();
                for (int k = 0; k < 5; k++, sentence++)
                {
                    string raw = scene.Caption(random);
                    sentences.Add(new JsonObject
                    {
                        ["raw"] = char.ToUpperInvariant(raw[0]) + raw[1..] + ".", ["imgid"] = id, ["sentid"] = sentence,
                        ["tokens"] = new JsonArray(raw.Replace(",", "").Split(' ').Select(t => (JsonNode)t).ToArray()),
                    });
                }
                images.Add(new JsonObject { ["filepath"] = "images", ["filename"] = filename, ["imgid"] = id, ["split"] = Splits[s], ["sentences"] = sentences });
                // One open question per image in VizWiz's annotation format (ten identical answers).
                var open = scene.OpenQuestions(random).ToList();
                var (question, answer) = open[random.Next(open.Count)];
                questions[Splits[s]].Add(new JsonObject
                {
                    ["image"] = Path.Combine("images", filename), ["question"] = question, ["answer_type"] = "other", ["answerable"] = 1,
                    ["answers"] = new JsonArray(Enumerable.Range(0, 10).Select(_ => (JsonNode)new JsonObject { ["answer"] = answer, ["answer_confidence"] = "yes" }).ToArray()),
                });
            }
        WriteJson(Path.Combine(root, "dataset_synth.json"), new JsonObject { ["dataset"] = "synth", ["images"] = images });
        foreach (var split in Splits) WriteJson(Path.Combine(root, $"vqa_{split}.json"), questions[split]);
        return new SyntheticSummary("captions", root, counts[0], counts[1], counts[2], double.NaN, double.NaN);
    }

    internal static void WriteJson(string path, JsonNode node)
    {
        AtomicFile.WriteAllText(path, node.ToJsonString());
    }
}
