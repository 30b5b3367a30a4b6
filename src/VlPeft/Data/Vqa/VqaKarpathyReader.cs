using System.Text.Json;

namespace VlPeft.Data.Vqa;

/// <summary>
/// VQAv2 in the VL-T5 / LXMERT Karpathy-style splits (the routing paper's <c>data/vqa_data.py</c>): <c>karpathy_{train,val,test}.json</c>,
/// each a JSON array of {question_id, img_id ("COCO_val2014_000000393225"), sent, label {answer: score}, answers [{answer, …}] or
/// [str], answer_type, question_type}, beside <c>trainval_ans2label.json</c> (3,129 answers, label 0 = ""). Images are looked up as
/// <c>&lt;img_id&gt;.jpg</c> (or .png) under <c>images/</c>, <c>&lt;train2014|val2014&gt;/</c> or the data directory itself.
/// </summary>
public static class VqaKarpathyReader
{
    public const string AnswerVocabularyFile = "trainval_ans2label.json";
    public static readonly string[] Splits = { "train", "val", "test" };

    public static string FileFor(string directory, string split) => Path.Combine(directory, $"karpathy_{split}.json");

    public static IReadOnlyList<OpenQuestionRecord> Read(string directory, string split, ReadOptions? options = null)
    {
        if (!Splits.Contains(split)) throw new BadInputException($"VQAv2 Karpathy split must be one of {string.Join(", ", Splits)}, got '{split}'");
        string path = FileFor(directory, split);
        using var doc = DatasetJson.Parse(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Array) throw new BadInputException("a Karpathy VQA split must be a JSON array of questions", path);
        var records = new List<OpenQuestionRecord>();
        var seen = new HashSet<string>();
        int index = 0;
        foreach (var r in doc.RootElement.EnumerateArray())
        {
            string where = $"#{index++}";
            if (r.ValueKind != JsonValueKind.Object) throw DatasetJson.Bad(where, "is not an object", path);
            string id = r.TryGetProperty("question_id", out var q) && q.ValueKind is JsonValueKind.Number or JsonValueKind.String
                ? q.ToString() : throw DatasetJson.Bad(where, "missing 'question_id'", path);
            if (!seen.Add(id)) throw DatasetJson.Bad(id, "appears twice", path);
            var answers = Answers(r, id, path);
            var label = Label(r, id, path);
            if (answers.Count == 0 && label is null) throw DatasetJson.Bad(id, "has neither 'answers' nor a 'label' dict", path);
            string image = DatasetJson.String(r, "img_id", id, path);
            records.Add(new OpenQuestionRecord
            {
                Id = id,
                Question = DatasetJson.String(r, "sent", id, path),
                Answers = answers,
                AnswerScores = label ?? SoftScores(answers),
                AnswerType = DatasetJson.String(r, "answer_type", id, path, required: false),
                QuestionType = DatasetJson.String(r, "question_type", id, path, required: false),
                ImagePath = ImagePath(directory, image, id, path, options?.RequireImages == true),
            });
        }
        return records;
    }

    /// <summary>
    /// Soft targets from the annotators' answers where a record has no <c>label</c> dict: min(1, c/3) for an answer given c
    /// times, after the official answer normalization (as the label dicts were made).
    /// </summary>
    public static IReadOnlyDictionary<string, double> SoftScores(IReadOnlyList<string> answers) =>
        answers.Select(a => Evaluation.Metrics.VqaAnswerNormalizer.Vqa.Normalize(a)).GroupBy(a => a)
            .ToDictionary(g => g.Key, g => Math.Min(1.0, g.Count() / 3.0));

    /// <summary>The answer vocabulary in label-id order (<c>trainval_ans2label.json</c>: answer → id, ids 0 … n − 1).</summary>
    public static IReadOnlyList<string> ReadAnswerVocabulary(string path)
    {
        using var doc = DatasetJson.Parse(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new BadInputException("the answer vocabulary must be a JSON object answer → label id", path);
        var labels = new string?[doc.RootElement.EnumerateObject().Count()];
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (!p.Value.TryGetInt32(out int id) || id < 0 || id >= labels.Length)
                throw new BadInputException($"answer '{p.Name}': label id must be an integer in [0, {labels.Length}), got {p.Value}", path);
            if (labels[id] is not null) throw new BadInputException($"label id {id} is given to both '{labels[id]}' and '{p.Name}'", path);
            labels[id] = p.Name;
        }
        return labels!;
    }

    static List<string> Answers(JsonElement r, string id, string path)
    {
        if (!r.TryGetProperty("answers", out var a) || a.ValueKind == JsonValueKind.Null) return new List<string>();
        if (a.ValueKind != JsonValueKind.Array) throw DatasetJson.Bad(id, "'answers' must be an array", path);
        return a.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : DatasetJson.String(x, "answer", id, path)).ToList();
    }

    static Dictionary<string, double>? Label(JsonElement r, string id, string path)
    {
        if (!r.TryGetProperty("label", out var l) || l.ValueKind == JsonValueKind.Null) return null;
        if (l.ValueKind != JsonValueKind.Object) throw DatasetJson.Bad(id, "'label' must be an object answer → score", path);
        var scores = new Dictionary<string, double>();
        foreach (var p in l.EnumerateObject())
            scores[p.Name] = p.Value.TryGetDouble(out double s) && s is >= 0 and <= 1 ? s
                : throw DatasetJson.Bad(id, $"label score of '{p.Name}' must be a number in [0, 1], got {p.Value}", path);
        return scores;
    }

    static string? ImagePath(string directory, string imageId, string id, string path, bool require)
    {
        string? split = imageId.Split('_') is { Length: 3 } parts ? parts[1] : null;
        var folders = new[] { Path.Combine(directory, "images"), split is null ? null : Path.Combine(directory, split), directory }.OfType<string>();
        foreach (var folder in folders)
            foreach (var extension in new[] { ".jpg", ".png" })
            {
                string candidate = DatasetPaths.Inside(folder, imageId + extension, id, path);
                if (File.Exists(candidate)) return candidate;
            }
        return require ? throw DatasetJson.Bad(id, $"image '{imageId}' not found (looked for {imageId}.jpg/.png under images/, {split ?? "<split>"}/ and the data directory)", path) : null;
    }
}
