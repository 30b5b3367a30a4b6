using System.Text.Json;

namespace VlPeft.Data.ScienceQa;

/// <summary>
/// ScienceQA as released (lupantech/ScienceQA): <c>problems.json</c> (pid → record),
/// <c>pid_splits.json</c> (split → ordered pids) and <c>images/&lt;split&gt;/&lt;pid&gt;/image.png</c>.
/// </summary>
public static class ScienceQaReader
{
    public const string ProblemsFile = "problems.json", SplitsFile = "pid_splits.json";

    /// <summary>
    /// Reads records. <paramref name="path"/> is the dataset directory (problems.json + pid_splits.json
    /// + images/) or a problems.json file. With a <paramref name="split"/>, the records are that split's
    /// pids in the split's order; with null, every record of problems.json in file order.
    /// <paramref name="imageOnly"/> keeps ScienceQA-IMG (image non-null; 6,218 / 2,097 / 2,017).
    /// </summary>
    public static ReadResult<ChoiceRecord> Read(string path, string? split, bool imageOnly = false, ReadOptions? options = null)
    {
        options ??= new ReadOptions();
        string directory = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path))!;
        string problemsPath = Directory.Exists(path) ? Path.Combine(path, ProblemsFile) : path;
        using var problems = DatasetJson.Parse(problemsPath);
        if (problems.RootElement.ValueKind != JsonValueKind.Object)
            throw new BadInputException("problems.json must be an object keyed by pid", problemsPath);

        IEnumerable<string> pids;
        if (split is null) pids = problems.RootElement.EnumerateObject().Select(p => p.Name).ToList();
        else pids = ReadSplit(Path.Combine(directory, SplitsFile), split);

        var records = new List<ChoiceRecord>();
        var skipped = new List<string>();
        foreach (var pid in pids)
        {
            try
            {
                if (!problems.RootElement.TryGetProperty(pid, out var raw))
                    throw DatasetJson.Bad(pid, $"listed in {SplitsFile} but absent from problems.json", problemsPath);
                var record = Parse(pid, raw, directory, split, problemsPath, options);
                if (!imageOnly || record.HasImage) records.Add(record);
            }
            catch (BadInputException e) when (options.SkipBadRecords)
            {
                skipped.Add(e.Message);
            }
        }
        return new ReadResult<ChoiceRecord>(records, skipped);
    }

    /// <summary>The ordered pids of a split (train, val, test, trainval, minitrain, minival, minitest).</summary>
    public static IReadOnlyList<string> ReadSplit(string splitsPath, string split)
    {
        using var splits = DatasetJson.Parse(splitsPath);
        if (!splits.RootElement.TryGetProperty(split, out var list) || list.ValueKind != JsonValueKind.Array)
        {
            var known = splits.RootElement.ValueKind == JsonValueKind.Object ? string.Join(", ", splits.RootElement.EnumerateObject().Select(p => p.Name)) : "";
            throw new BadInputException($"unknown split '{split}' (known: {known})", splitsPath);
        }
        return list.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : e.GetRawText()).ToList();
    }

    static ChoiceRecord Parse(string pid, JsonElement raw, string directory, string? requestedSplit, string file, ReadOptions options)
    {
        if (raw.ValueKind != JsonValueKind.Object) throw DatasetJson.Bad(pid, "is not an object", file);
        var choices = DatasetJson.Strings(raw, "choices", pid, file);
        if (choices.Count < 2) throw DatasetJson.Bad(pid, $"has {choices.Count} choices (at least 2 expected)", file);
        int answer = DatasetJson.AnswerIndex(raw, choices.Count, pid, file);
        string? image = DatasetJson.NullableString(raw, "image", pid, file);
        string split = DatasetJson.String(raw, "split", pid, file, required: false);
        if (split.Length == 0) split = requestedSplit ?? "";
        string? imagePath = null;
        if (image != null)
        {
            imagePath = DatasetPaths.Inside(directory, Path.Combine("images", split, pid, image), pid, file);
            DatasetPaths.CheckImage(imagePath, options, pid, file);
        }
        return new ChoiceRecord
        {
            Id = pid,
            Question = DatasetJson.String(raw, "question", pid, file),
            Choices = choices,
            Answer = answer,
            Hint = DatasetJson.String(raw, "hint", pid, file, required: false),
            Lecture = DatasetJson.String(raw, "lecture", pid, file, required: false),
            Solution = DatasetJson.String(raw, "solution", pid, file, required: false),
            Subject = DatasetJson.String(raw, "subject", pid, file),
            Grade = DatasetJson.String(raw, "grade", pid, file),
            Topic = DatasetJson.String(raw, "topic", pid, file, required: false),
            Category = DatasetJson.String(raw, "category", pid, file, required: false),
            Skill = DatasetJson.String(raw, "skill", pid, file, required: false),
            Task = DatasetJson.String(raw, "task", pid, file, required: false),
            Split = split,
            HasImage = image != null,
            ImagePath = imagePath,
        };
    }
}
