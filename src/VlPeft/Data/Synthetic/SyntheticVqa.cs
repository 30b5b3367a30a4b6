using System.Text.Json.Nodes;
using VlPeft.Evaluation.Metrics;
using VlPeft.Imaging;

namespace VlPeft.Data.Synthetic;

/// <summary>
/// Open questions about synthetic scenes in the VL-T5 Karpathy VQAv2 layout: karpathy_{train,val,test}.json (img_id, sent,
/// question_id, 10 answers, the label dict of soft scores), trainval_ans2label.json and images/&lt;img_id&gt;.png. Annotators
/// disagree as on VQAv2: each of the ten answers is, with probability 0.15, an answer another scene gave to the same question.
/// </summary>
static class SyntheticVqa
{
    const double Disagreement = 0.15;

    public static SyntheticSummary Write(string root, int[] counts, Random random, int size)
    {
        Directory.CreateDirectory(Path.Combine(root, "images"));
        var pools = new Dictionary<string, List<string>>();     // question text → answers seen so far (the annotators' confusions)
        var splits = new List<List<(string Question, IReadOnlyList<string> Answers)>>();
        var vocabulary = new SortedSet<string>(StringComparer.Ordinal);
        int imageId = 0;
        for (int s = 0; s < 3; s++)
        {
            var array = new JsonArray();
            var questions = new List<(string, IReadOnlyList<string>)>();
            for (int i = 0; i < counts[s]; i++, imageId++)
            {
                var scene = Scene.Draw(random, 1, 4);
                var open = scene.OpenQuestions(random).ToList();
                var (question, answer) = open[random.Next(open.Count)];
                var pool = pools.TryGetValue(question, out var p) ? p : pools[question] = new List<string>();
                var answers = Enumerable.Range(0, 10).Select(_ => pool.Count > 0 && random.NextDouble() < Disagreement ? pool[random.Next(pool.Count)] : answer).ToList();
                pool.Add(answer);
                var label = Label(answers);
                foreach (var a in label.Keys) vocabulary.Add(a);
                string imgId = $"COCO_{(s == 0 ? "train2014" : "val2014")}_{imageId:D12}";
                PngWriter.Write(Path.Combine(root, "images", imgId + ".png"), size, size, scene.Render(size));
                array.Add(new JsonObject
                {
                    ["question_id"] = imageId * 1000L, ["img_id"] = imgId, ["sent"] = question,
                    ["answer_type"] = answer is "yes" or "no" ? "yes/no" : int.TryParse(answer, out _) ? "number" : "other",
                    ["question_type"] = string.Join(' ', question.Split(' ').Take(3)).ToLowerInvariant(),
                    ["answers"] = new JsonArray(answers.Select((a, k) => (JsonNode)new JsonObject { ["answer"] = a, ["answer_confidence"] = "yes", ["answer_id"] = k + 1 }).ToArray()),
                    ["label"] = new JsonObject(label.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
                });
                questions.Add((question, answers));
            }
            SyntheticSuite.WriteJson(Path.Combine(root, $"karpathy_{SyntheticSuite.Splits[s]}.json"), array);
            splits.Add(questions);
        }
        var ans2label = new JsonObject { [""] = 0 };
        int id = 1;
        foreach (var answer in vocabulary.Where(a => a.Length > 0)) ans2label[answer] = id++;
        SyntheticSuite.WriteJson(Path.Combine(root, "trainval_ans2label.json"), ans2label);
        var (blind, majority) = BlindScores(splits[0], splits[2]);
        return new SyntheticSummary("vqav2", root, counts[0], counts[1], counts[2], blind, majority);
    }

    /// <summary>The label dict as LXMERT's compute_softscore writes it: normalized answers scored 0.3 / 0.6 / 0.9 / 1 for 1 / 2 / 3 / ≥ 4 annotators.</summary>
    static Dictionary<string, double> Label(IEnumerable<string> answers) =>
        answers.Select(a => VqaAnswerNormalizer.Vqa.Normalize(a)).GroupBy(a => a)
            .ToDictionary(g => g.Key, g => Math.Min(1.0, Math.Round(0.3 * g.Count(), 1)));

    /// <summary>
    /// VQA accuracy of a blind answerer (the most common training answer to the same question text, else the most common
    /// answer overall), and of always answering the most common answer: what the image has to add to.
    /// </summary>
    static (double Blind, double Majority) BlindScores(List<(string Question, IReadOnlyList<string> Answers)> train, List<(string Question, IReadOnlyList<string> Answers)> test)
    {
        static string Top(IEnumerable<string> answers) => answers.GroupBy(a => a).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).First().Key;
        var byQuestion = train.GroupBy(q => q.Question).ToDictionary(g => g.Key, g => Top(g.Select(q => Top(q.Answers))));
        string overall = Top(train.Select(q => Top(q.Answers)));
        double Score(Func<string, string> predict) => 100 * test.Average(q => VqaScorer.QuestionAccuracy(predict(q.Question), q.Answers));
        return (Score(q => byQuestion.GetValueOrDefault(q, overall)), Score(_ => overall));
    }
}
