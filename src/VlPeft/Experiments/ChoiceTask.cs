using TorchSharp;
using VlPeft.Data;
using VlPeft.Data.Synthetic;
using VlPeft.Evaluation;
using VlPeft.Models;
using VlPeft.Runtime;
using VlPeft.Text;
using VlPeft.Training;
using static TorchSharp.torch;

namespace VlPeft.Experiments;

/// <summary>
/// Multiple-choice fine-tuning as in the Q-Former PEFT paper: train on "(x) choice" targets of the
/// InstructBLIP PEFT prompts; validate (and test) by ranking the candidates by LM loss.
/// </summary>
public sealed class ChoiceTask : ITrainingTask
{
    readonly VisionLanguageModel model;
    readonly VisionLanguageProcessor processor;
    readonly IReadOnlyList<ChoiceRecord> train, validation;
    readonly Func<ChoiceRecord, PromptExample> prompt;

    public ChoiceTask(VisionLanguageModel model, VisionLanguageProcessor processor, IReadOnlyList<ChoiceRecord> train,
        IReadOnlyList<ChoiceRecord> validation, Func<ChoiceRecord, PromptExample> prompt)
    {
        this.model = model;
        this.processor = processor;
        this.train = train;
        this.validation = validation;
        this.prompt = prompt;
    }

    public int TrainCount => train.Count;

    /// <summary>Random crop and flip of training images (LAVIS's train processor).</summary>
    public bool Augment { get; init; } = true;

    /// <summary>Generated text → choice index (−1 = none); default: match the option text (<see cref="ChoiceAnswerParser"/>).</summary>
    public Func<string, ChoiceRecord, int> AnswerParser { get; init; } = (text, r) => ChoiceAnswerParser.Parse(text, r.Choices);

    public Tensor Loss(IReadOnlyList<int> examples, int epoch, Random random)
    {
        var batch = examples.Select(i => (train[i].ImagePath, Prompt: prompt(train[i]))).Select(e => new TextExample(e.ImagePath, e.Prompt.Instruction, e.Prompt.Target)).ToList();
        return model.Loss(processor.TrainingBatch(batch, Augment ? random : null));
    }

    public double Validate() => Accuracy(validation, out _);

    /// <summary>Records evaluated per GC quiet region (entering one costs a collection; the calls inside nest for free).</summary>
    const int RecordsPerQuietRegion = 16;

    /// <summary>Accuracy in percent when answers are generated and parsed back to a choice (−1 = wrong).</summary>
    public double GenerationAccuracy(IReadOnlyList<ChoiceRecord> records, GenerationOptions options, out Dictionary<string, int> predictions)
    {
        var generator = new TextGenerator(model, processor);
        predictions = PerRecord(records, r => AnswerParser(generator.Generate(r.ImagePath, prompt(r).Instruction, options), r));
        return Percent(records, predictions);
    }

    /// <summary>Ranking accuracy in percent, and the predicted index per record id.</summary>
    public double Accuracy(IReadOnlyList<ChoiceRecord> records, out Dictionary<string, int> predictions)
    {
        var ranker = new CandidateRanker(model, processor);
        predictions = PerRecord(records, r =>
        {
            var p = prompt(r);
            return ranker.Rank(r.ImagePath, p.Instruction, p.Candidates).Best;
        });
        return Percent(records, predictions);
    }

    static double Percent(IReadOnlyList<ChoiceRecord> records, Dictionary<string, int> predictions) =>
        records.Count == 0 ? 0 : 100.0 * records.Count(r => predictions[r.Id] == r.Answer) / records.Count;

    /// <summary>The predicted index per record id, chunks of records shared among the ranks of a distributed run.</summary>
    static Dictionary<string, int> PerRecord(IReadOnlyList<ChoiceRecord> records, Func<ChoiceRecord, int> predict)
    {
        var indices = Distributed.Cluster.Current.MapChunks(records, RecordsPerQuietRegion, chunk =>
        {
            using var quiet = GcQuietRegion.Enter();
            return chunk.Select(predict).ToList();
        });
        var predictions = new Dictionary<string, int>();
        for (int i = 0; i < records.Count; i++) predictions[records[i].Id] = indices[i];
        return predictions;
    }
}

/// <summary>
/// Captioning (the tiny base's pretraining task): target = a reference caption; validation = −mean
/// caption loss. An image–text contrastive term (BLIP-2's first-stage ITC, here between the mean
/// projected query and the mean LM embedding of the caption) is added: from scratch, the captioning
/// loss alone lets the LM settle on the language prior before the image path carries any signal.
/// </summary>
public sealed class CaptionTask : ITrainingTask
{
    public const string Instruction = InstructBlipPeftPrompts.Flickr30k;

    readonly VisionLanguageModel model;
    readonly VisionLanguageProcessor processor;
    readonly IReadOnlyList<CaptionRecord> train, validation;
    readonly IReadOnlyList<OpenQuestionRecord> questions;

    /// <param name="questions">Optional open questions on the training images (VizWiz format), asked with the
    /// InstructBLIP PEFT VizWiz instruction half of the time: instruction-style pretraining, as InstructBLIP's base.</param>
    public CaptionTask(VisionLanguageModel model, VisionLanguageProcessor processor, IReadOnlyList<CaptionRecord> train,
        IReadOnlyList<CaptionRecord> validation, IReadOnlyList<OpenQuestionRecord>? questions = null)
    {
        this.model = model;
        this.processor = processor;
        this.train = train;
        this.validation = validation;
        this.questions = questions ?? Array.Empty<OpenQuestionRecord>();
    }

    public int TrainCount => train.Count + questions.Count;

    /// <summary>Random crop and flip of training images (LAVIS's train processor).</summary>
    public bool Augment { get; init; } = true;

    public Tensor Loss(IReadOnlyList<int> examples, int epoch, Random random)
    {
        // One of the references at random each time (LAVIS trains on every (image, caption) pair).
        var batch = examples.Select(i => i < train.Count
            ? new TextExample(train[i].ImagePath, Instruction, train[i].References[random.Next(train[i].References.Count)])
            : QuestionExample(questions[i - train.Count], random)).ToList();
        var inputs = processor.TrainingBatch(batch, Augment ? random : null);
        var output = model.call(inputs);
        return ContrastiveWeight > 0 && batch.Count > 1 ? output.Loss! + ContrastiveWeight * Contrastive(output.VisualTokens, inputs.Labels!) : output.Loss!;
    }

    public double ContrastiveWeight { get; init; } = 1.0;

    /// <summary>
    /// Half of the questions whose answer allows it are asked as multiple choice in the fine-tuning
    /// tasks' templates (ScienceQA or IconQA, "(x) answer" targets), as InstructBLIP's instruction data
    /// mixes open and multiple-choice VQA: a frozen LM must already know how options map to letters.
    /// The others are asked open-ended.
    /// </summary>
    static TextExample QuestionExample(OpenQuestionRecord question, Random random)
    {
        string answer = question.Answers[0];
        if (random.Next(2) == 0 && OpenAnswerChoices.For(answer, random) is (var choices, var index))
        {
            var record = new ChoiceRecord { Id = question.Id, Question = question.Question, Choices = choices, Answer = index };
            var prompt = random.Next(2) == 0 ? InstructBlipPeftPrompts.ScienceQa(record) : InstructBlipPeftPrompts.IconQa(record);
            return new TextExample(question.ImagePath, prompt.Instruction, prompt.Target);
        }
        return new TextExample(question.ImagePath, QuestionInstruction(question.Question, random), answer);
    }

    /// <summary>
    /// Open questions are asked in several instruction styles (as InstructBLIP's instruction tuning mixes
    /// templates), so the base learns to look at the image whatever the wording around the question.
    /// </summary>
    static string QuestionInstruction(string question, Random random) => random.Next(4) switch
    {
        0 => InstructBlipPeftPrompts.VizWiz(question),
        1 => $"Question: {question} Answer:",
        2 => "Context: { } Question: {" + question + "} Answer:",
        _ => question,
    };

    /// <summary>Symmetric InfoNCE between image features (mean visual token) and caption features (mean token embedding).</summary>
    Tensor Contrastive(Tensor projected, Tensor labels)
    {
        var mask = labels.ge(0).unsqueeze(-1).to(projected.dtype);
        var tokens = model.EmbedTokens(labels.clamp_min(0)) * mask;
        var text = tokens.sum(1) / mask.sum(1).clamp_min(1);
        var image = projected.mean(new long[] { 1 });
        var logits = torch.nn.functional.normalize(image, dim: -1).matmul(torch.nn.functional.normalize(text, dim: -1).t()) / 0.1;
        var target = torch.arange(logits.shape[0], dtype: ScalarType.Int64);
        return (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.t(), target)) / 2;
    }

    public double Validate()
    {
        // Loss × batch size per chunk of 16, the chunks shared among the ranks of a distributed run.
        var sums = Distributed.Cluster.Current.MapChunks(validation, 16, chunk =>
        {
            using var quiet = GcQuietRegion.Enter();
            using var scope = torch.NewDisposeScope();
            var batch = chunk.Select(r => new TextExample(r.ImagePath, Instruction, r.References[0])).ToList();
            return new double[] { model.Loss(processor.TrainingBatch(batch)).item<float>() * batch.Count };
        });
        return -sums.Sum() / validation.Count;
    }
}
