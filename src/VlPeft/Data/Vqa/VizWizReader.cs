using System.Text.Json;

namespace VlPeft.Data.Vqa;

/// <summary>VizWiz VQA annotations (<c>train.json</c> / <c>val.json</c> / <c>test.json</c>): a JSON array keyed by image name.</summary>
public static class VizWizReader
{
    public static IReadOnlyList<OpenQuestionRecord> Read(string annotationsPath, string? imageFolder = null)
    {
        using var doc = DatasetJson.Parse(annotationsPath);
        if (doc.RootElement.ValueKind != JsonValueKind.Array) throw new BadInputException("VizWiz annotations must be a JSON array", annotationsPath);
        var records = new List<OpenQuestionRecord>();
        var seen = new HashSet<string>();
        int index = 0;
        foreach (var r in doc.RootElement.EnumerateArray())
        {
            string where = $"#{index++}";
            if (r.ValueKind != JsonValueKind.Object) throw DatasetJson.Bad(where, "is not an object", annotationsPath);
            string image = DatasetJson.String(r, "image", where, annotationsPath);
            if (!seen.Add(image)) throw DatasetJson.Bad(image, "appears twice", annotationsPath);
            var answers = r.TryGetProperty("answers", out var a) && a.ValueKind == JsonValueKind.Array
                ? a.EnumerateArray().Select(x => DatasetJson.String(x, "answer", image, annotationsPath)).ToList()
                : new List<string>();
            records.Add(new OpenQuestionRecord
            {
                Id = image,
                Question = DatasetJson.String(r, "question", image, annotationsPath),
                Answers = answers,
                AnswerType = DatasetJson.String(r, "answer_type", image, annotationsPath, required: false),
                Answerable = r.TryGetProperty("answerable", out var ans) && ans.TryGetInt32(out int v) ? v == 1 : null,
                ImagePath = imageFolder is null ? null : DatasetPaths.Inside(imageFolder, image, image, annotationsPath),
            });
        }
        return records;
    }
}
