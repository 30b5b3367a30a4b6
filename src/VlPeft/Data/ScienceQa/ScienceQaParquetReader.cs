using Parquet.Serialization;

namespace VlPeft.Data.ScienceQa;

/// <summary>
/// The Hugging Face export of ScienceQA (derek-thomas/ScienceQA, one parquet file per split). It has
/// no pid column: row i of a split is <c>pid_splits[split][i]</c> (the HF "validation" split is
/// "val" there). Images come as bytes; they are written under <paramref name="imageCache"/> as
/// <c>&lt;split&gt;/&lt;pid&gt;/image.png</c> so records point at files like the released layout.
/// </summary>
public static class ScienceQaParquetReader
{
    /// <summary>One parquet row in the HF schema.</summary>
    public sealed class Row
    {
        public HfImage? image { get; set; }
        public string question { get; set; } = "";
        public List<string> choices { get; set; } = new();
        public sbyte answer { get; set; }
        public string hint { get; set; } = "";
        public string task { get; set; } = "";
        public string grade { get; set; } = "";
        public string subject { get; set; } = "";
        public string topic { get; set; } = "";
        public string category { get; set; } = "";
        public string skill { get; set; } = "";
        public string lecture { get; set; } = "";
        public string solution { get; set; } = "";
    }

    /// <summary>HF Image feature: struct{bytes, path}.</summary>
    public sealed class HfImage
    {
        public byte[]? bytes { get; set; }
        public string? path { get; set; }
    }

    public static IReadOnlyList<ChoiceRecord> Read(string parquetPath, string pidSplitsPath, string split, string imageCache)
    {
        if (!File.Exists(parquetPath)) throw new BadInputException("parquet file not found", parquetPath);
        string officialSplit = split == "validation" ? "val" : split;
        var pids = ScienceQaReader.ReadSplit(pidSplitsPath, officialSplit);
        IList<Row> rows;
        try
        {
            using var stream = File.OpenRead(parquetPath);
            rows = ParquetSerializer.DeserializeAsync<Row>(stream).GetAwaiter().GetResult().Data;
        }
        catch (Exception e) when (e is not BadInputException && e is not OutOfMemoryException)
        {
            throw new BadInputException($"not a ScienceQA parquet export: {e.Message}", parquetPath);
        }
        if (rows.Count != pids.Count)
            throw new BadInputException($"{rows.Count} rows but pid_splits.json lists {pids.Count} pids for '{officialSplit}': the rows cannot be matched to pids", parquetPath);
        var records = new List<ChoiceRecord>();
        for (int i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            string pid = pids[i];
            // The pid names a folder under the image cache: a separator or ".." would write outside it.
            if (pid.Length == 0 || pid is "." or ".." || pid.IndexOfAny(new[] { '/', '\\', '\0' }) >= 0)
                throw new BadInputException($"pid_splits.json lists pid '{pid}', which is not a plain folder name", pidSplitsPath);
            if (row.answer < 0 || row.answer >= row.choices.Count)
                throw new BadInputException($"row {i} (pid {pid}): answer {row.answer} is not an index into its {row.choices.Count} choices", parquetPath);
            string? imagePath = null;
            if (row.image?.bytes is { Length: > 0 } bytes)
            {
                string folder = Path.Combine(imageCache, officialSplit, pid);
                Directory.CreateDirectory(folder);
                imagePath = Path.Combine(folder, "image.png");
                if (!File.Exists(imagePath)) File.WriteAllBytes(imagePath, bytes);
            }
            records.Add(new ChoiceRecord
            {
                Id = pid, Question = row.question, Choices = row.choices, Answer = row.answer, Hint = row.hint, Lecture = row.lecture,
                Solution = row.solution, Subject = row.subject, Grade = row.grade, Topic = row.topic, Category = row.category,
                Skill = row.skill, Task = row.task, Split = officialSplit, HasImage = imagePath != null, ImagePath = imagePath,
            });
        }
        return records;
    }
}
