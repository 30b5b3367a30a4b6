using VlPeft.Data;

namespace VlPeft.Evaluation.Metrics;

/// <summary>IconQA accuracy: 100·#{str(pred) == str(answer)}/N (the official tools/sub_acc.py), "{:.2f}".</summary>
public static class IconQaScorer
{
    public static ScoreReport Score(IReadOnlyList<ChoiceRecord> records, IReadOnlyDictionary<string, int> predictions)
    {
        int correct = records.Count(r => predictions[r.Id] == r.Answer);
        return new ScoreReport(
            new Dictionary<string, object> { ["accuracy"] = PythonNumbers.Fixed(100.0 * correct / records.Count) },
            new Dictionary<string, long> { ["questions"] = records.Count, ["correct"] = correct });
    }
}
