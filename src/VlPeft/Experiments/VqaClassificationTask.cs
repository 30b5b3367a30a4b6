using TorchSharp;
using VlPeft.Data;
using VlPeft.Evaluation.Metrics;
using VlPeft.Models;
using VlPeft.Models.Multimodal;
using VlPeft.Runtime;
using VlPeft.Training;
using static TorchSharp.torch;

namespace VlPeft.Experiments;

/// <summary>
/// VQAv2 as the routing paper trains it: a classifier over the answer vocabulary, BCE against the soft scores of each
/// question's label dict; validated and tested by the official VQA accuracy of the best-scoring answer.
/// </summary>
public sealed class VqaClassificationTask : ITrainingTask
{
    const int EvalBatch = 32;

    readonly VisionLanguageModel model;
    readonly VqaClassifierProcessor processor;
    readonly IReadOnlyList<OpenQuestionRecord> train, validation;
    readonly IReadOnlyList<IReadOnlyDictionary<int, float>> targets;

    public VqaClassificationTask(VisionLanguageModel model, VqaClassifierProcessor processor, IReadOnlyList<OpenQuestionRecord> train, IReadOnlyList<OpenQuestionRecord> validation)
    {
        this.model = model;
        this.processor = processor;
        this.train = train;
        this.validation = validation;
        // Answers outside the vocabulary get no target (as compute_softscore drops them); a question may end with none.
        targets = train.Select(r => (IReadOnlyDictionary<int, float>)(r.AnswerScores ?? new Dictionary<string, double>())
            .Select(kv => (Id: processor.LabelId(kv.Key), kv.Value)).Where(x => x.Id is not null)
            .ToDictionary(x => x.Id!.Value, x => (float)x.Value)).ToList();
    }

    public int TrainCount => train.Count;

    public Tensor Loss(IReadOnlyList<int> examples, int epoch, Random random) =>
        model.Loss(processor.Batch(examples.Select(i => train[i].ImagePath).ToList(), examples.Select(i => train[i].Question).ToList(),
            examples.Select(i => targets[i]).ToList()));

    public double Validate() => Accuracy(validation, out _);

    /// <summary>VQA accuracy in percent (official evaluator) of the argmax answers, and the answer per question id.</summary>
    public double Accuracy(IReadOnlyList<OpenQuestionRecord> records, out Dictionary<string, string> predictions)
    {
        // Chunks of EvalBatch questions, shared among the ranks of a distributed run.
        var answers = Distributed.Cluster.Current.MapChunks(records, EvalBatch, chunk =>
        {
            using var quiet = GcQuietRegion.Enter();
            using var scope = torch.NewDisposeScope();
            var best = model.ClassScores(processor.Batch(chunk.Select(r => r.ImagePath).ToList(), chunk.Select(r => r.Question).ToList())).argmax(-1).data<long>().ToArray();
            return best.Select(b => processor.Labels[(int)b]).ToList();
        });
        predictions = new Dictionary<string, string>();
        for (int i = 0; i < records.Count; i++) predictions[records[i].Id] = answers[i];
        return records.Count == 0 ? 0 : (double)VqaScorer.Score(records, predictions).Metrics["overall"];
    }
}
