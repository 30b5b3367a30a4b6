using VlPeft.Data;

namespace VlPeft.Evaluation.Metrics;

/// <summary>
/// VQA accuracy exactly as the official evaluator (vqaEval.py): whitespace cleaned; GT answers and
/// the prediction normalized only when the GT answers differ; per question the mean over the 10
/// leave-one-out subsets of min(1, matches/3); overall, per question type and per answer type as
/// round(100·mean, 2) of unrounded values.
/// </summary>
public static class VqaScorer
{
    /// <summary>Accuracy in [0, 1] of one prediction against the annotators' answers.</summary>
    public static double QuestionAccuracy(string prediction, IReadOnlyList<string> answers)
    {
        var gts = answers.Select(VqaAnswerNormalizer.CleanWhitespace).ToList();
        string pred = VqaAnswerNormalizer.CleanWhitespace(prediction);
        if (gts.Distinct().Count() > 1)
        {
            var n = VqaAnswerNormalizer.Vqa;
            gts = gts.Select(n.Normalize).ToList();
            pred = n.Normalize(pred);
        }
        return LeaveOneOut(pred, gts);
    }

    /// <summary>mean over i of min(1, #{j ≠ i : gt_j == pred}/3).</summary>
    public static double LeaveOneOut(string prediction, IReadOnlyList<string> answers)
    {
        double sum = 0;
        for (int i = 0; i < answers.Count; i++)
        {
            int matches = 0;
            for (int j = 0; j < answers.Count; j++)
                if (j != i && answers[j] == prediction) matches++;
            sum += Math.Min(1.0, matches / 3.0);
        }
        return answers.Count == 0 ? 0 : sum / answers.Count;
    }

    public static ScoreReport Score(IReadOnlyList<OpenQuestionRecord> records, IReadOnlyDictionary<string, string> predictions)
    {
        var accuracy = records.ToDictionary(r => r.Id, r => QuestionAccuracy(predictions[r.Id], r.Answers));
        return Report(records, accuracy, perQuestionType: true);
    }

    internal static ScoreReport Report(IReadOnlyList<OpenQuestionRecord> records, IReadOnlyDictionary<string, double> accuracy, bool perQuestionType)
    {
        var metrics = new Dictionary<string, object> { ["overall"] = PythonNumbers.Round(100 * records.Average(r => accuracy[r.Id])) };
        var counts = new Dictionary<string, long> { ["questions"] = records.Count };
        void Groups(string name, Func<OpenQuestionRecord, string> key)
        {
            var table = records.GroupBy(key).OrderBy(g => g.Key, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => PythonNumbers.Round(100 * g.Average(r => accuracy[r.Id])));
            metrics[name] = table;
            foreach (var g in records.GroupBy(key)) counts[$"{name}:{g.Key}"] = g.Count();
        }
        if (perQuestionType) Groups("perQuestionType", r => r.QuestionType);
        Groups("perAnswerType", r => r.AnswerType);
        return new ScoreReport(metrics, counts);
    }
}

/// <summary>
/// VizWiz accuracy (the VizWiz-distributed vqaEval.py): the prediction is always normalized (with
/// the U+2019 contraction table), the GT answers never; same leave-one-out min(1, m/3); overall and
/// per answer type; "unanswerable" is an ordinary answer.
/// </summary>
public static class VizWizScorer
{
    public static double QuestionAccuracy(string prediction, IReadOnlyList<string> answers)
    {
        string pred = VqaAnswerNormalizer.VizWiz.Normalize(VqaAnswerNormalizer.CleanWhitespace(prediction));
        return VqaScorer.LeaveOneOut(pred, answers);
    }

    public static ScoreReport Score(IReadOnlyList<OpenQuestionRecord> records, IReadOnlyDictionary<string, string> predictions)
    {
        var accuracy = records.ToDictionary(r => r.Id, r => QuestionAccuracy(predictions[r.Id], r.Answers));
        return VqaScorer.Report(records, accuracy, perQuestionType: false);
    }
}
