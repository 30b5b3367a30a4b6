using System.Text.Json;

namespace VlPeft.Data.Vqa;

/// <summary>
/// VQAv2 as released: <c>v2_OpenEnded_mscoco_&lt;split&gt;_questions.json</c> and
/// <c>v2_mscoco_&lt;split&gt;_annotations.json</c>, joined by question_id; images
/// <c>COCO_&lt;split&gt;_&lt;image_id:012d&gt;.jpg</c> under an optional image folder.
/// </summary>
public static class VqaReader
{
    public static (string Questions, string Annotations) FilesIn(string directory, string split) =>
        (Path.Combine(directory, $"v2_OpenEnded_mscoco_{split}_questions.json"), Path.Combine(directory, $"v2_mscoco_{split}_annotations.json"));

    public static IReadOnlyList<OpenQuestionRecord> Read(string questionsPath, string annotationsPath, string? imageFolder = null, string? imageSplit = null)
    {
        using var questions = DatasetJson.Parse(questionsPath);
        using var annotations = DatasetJson.Parse(annotationsPath);
        if (!questions.RootElement.TryGetProperty("questions", out var qs) || qs.ValueKind != JsonValueKind.Array)
            throw new BadInputException("no 'questions' array", questionsPath);
        if (!annotations.RootElement.TryGetProperty("annotations", out var anns) || anns.ValueKind != JsonValueKind.Array)
            throw new BadInputException("no 'annotations' array", annotationsPath);

        var byId = new Dictionary<long, JsonElement>();
        foreach (var a in anns.EnumerateArray())
        {
            long qid = QuestionId(a, annotationsPath);
            if (!byId.TryAdd(qid, a)) throw DatasetJson.Bad(qid.ToString(), "appears twice", annotationsPath);
        }
        var records = new List<OpenQuestionRecord>();
        foreach (var q in qs.EnumerateArray())
        {
            long qid = QuestionId(q, questionsPath);
            string id = qid.ToString();
            if (!byId.Remove(qid, out var a)) throw DatasetJson.Bad(id, "has no annotation", annotationsPath);
            if (!a.TryGetProperty("answers", out var answers) || answers.ValueKind != JsonValueKind.Array)
                throw DatasetJson.Bad(id, "missing 'answers'", annotationsPath);
            long imageId = q.TryGetProperty("image_id", out var img) && img.TryGetInt64(out long i) ? i : -1;
            records.Add(new OpenQuestionRecord
            {
                Id = id,
                Question = DatasetJson.String(q, "question", id, questionsPath),
                Answers = answers.EnumerateArray().Select(x => DatasetJson.String(x, "answer", id, annotationsPath)).ToList(),
                AnswerType = DatasetJson.String(a, "answer_type", id, annotationsPath, required: false),
                QuestionType = DatasetJson.String(a, "question_type", id, annotationsPath, required: false),
                MultipleChoiceAnswer = DatasetJson.String(a, "multiple_choice_answer", id, annotationsPath, required: false),
                ImagePath = imageFolder is null || imageSplit is null ? null : Path.Combine(imageFolder, $"COCO_{imageSplit}_{imageId:D12}.jpg"),
            });
        }
        if (byId.Count > 0) throw DatasetJson.Bad(byId.Keys.First().ToString(), "has an annotation but no question", questionsPath);
        return records;
    }

    static long QuestionId(JsonElement e, string file) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("question_id", out var v) && v.TryGetInt64(out long id)
            ? id : throw new BadInputException("an entry lacks an integer question_id", file);
}
