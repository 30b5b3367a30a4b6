using System.Text.Json;

namespace VlPeft.Data.IconQa;

/// <summary>
/// IconQA multi-text-choice (choose_txt) as released: either the per-question folders
/// <c>&lt;split&gt;/choose_txt/&lt;qid&gt;/{data.json,image.png}</c> (root = <c>iconqa_data/iconqa</c>), or
/// <c>problems.json</c> + <c>pid_splits.json</c> ("choose_txt_&lt;split&gt;") with images under
/// <c>iconqa/&lt;split&gt;/choose_txt/&lt;pid&gt;/</c> (root = <c>iconqa_data</c>).
/// </summary>
public static class IconQaReader
{
    public const string Task = "choose_txt";

    public static ReadResult<ChoiceRecord> Read(string root, string split, ReadOptions? options = null)
    {
        options ??= new ReadOptions();
        if (!Directory.Exists(root)) throw new BadInputException("IconQA directory not found", root);
        if (File.Exists(Path.Combine(root, "problems.json"))) return ReadProblems(root, split, options);
        string folder = Path.Combine(root, split, Task);
        if (Directory.Exists(folder)) return ReadFolders(root, folder, split, options);
        throw new BadInputException($"neither problems.json nor {split}/{Task}/ found (unknown split '{split}'?)", root);
    }

    static ReadResult<ChoiceRecord> ReadFolders(string root, string folder, string split, ReadOptions options)
    {
        var records = new List<ChoiceRecord>();
        var skipped = new List<string>();
        foreach (var dir in Directory.GetDirectories(folder).OrderBy(d => int.TryParse(Path.GetFileName(d), out int n) ? n : int.MaxValue).ThenBy(d => d, StringComparer.Ordinal))
        {
            string qid = Path.GetFileName(dir);
            string dataPath = Path.Combine(dir, "data.json");
            try
            {
                using var doc = DatasetJson.Parse(dataPath);
                records.Add(Parse(qid, doc.RootElement, Path.Combine(dir, "image.png"), split, dataPath, options));
            }
            catch (BadInputException e) when (options.SkipBadRecords)
            {
                skipped.Add(e.Message);
            }
        }
        return new ReadResult<ChoiceRecord>(records, skipped);
    }

    static ReadResult<ChoiceRecord> ReadProblems(string root, string split, ReadOptions options)
    {
        string problemsPath = Path.Combine(root, "problems.json");
        var pids = ScienceQa.ScienceQaReader.ReadSplit(Path.Combine(root, "pid_splits.json"), $"{Task}_{split}");
        using var problems = DatasetJson.Parse(problemsPath);
        var records = new List<ChoiceRecord>();
        var skipped = new List<string>();
        foreach (var pid in pids)
        {
            try
            {
                if (!problems.RootElement.TryGetProperty(pid, out var raw))
                    throw DatasetJson.Bad(pid, "listed in pid_splits.json but absent from problems.json", problemsPath);
                string image = DatasetPaths.Inside(root, Path.Combine("iconqa", split, Task, pid, "image.png"), pid, problemsPath);
                records.Add(Parse(pid, raw, image, split, problemsPath, options));
            }
            catch (BadInputException e) when (options.SkipBadRecords)
            {
                skipped.Add(e.Message);
            }
        }
        return new ReadResult<ChoiceRecord>(records, skipped);
    }

    static ChoiceRecord Parse(string id, JsonElement raw, string imagePath, string split, string file, ReadOptions options)
    {
        if (raw.ValueKind != JsonValueKind.Object) throw DatasetJson.Bad(id, "is not an object", file);
        string type = DatasetJson.String(raw, "ques_type", id, file, required: false);
        if (type.Length > 0 && type != Task) throw DatasetJson.Bad(id, $"ques_type is '{type}', expected '{Task}'", file);
        var choices = DatasetJson.Strings(raw, "choices", id, file);
        int answer = DatasetJson.AnswerIndex(raw, choices.Count, id, file);
        DatasetPaths.CheckImage(imagePath, options, id, file);
        return new ChoiceRecord
        {
            Id = id,
            Question = DatasetJson.String(raw, "question", id, file),
            Choices = choices,
            Answer = answer,
            Grade = DatasetJson.String(raw, "grade", id, file, required: false),
            Task = Task,
            Split = split,
            HasImage = true,
            ImagePath = imagePath,
        };
    }
}
