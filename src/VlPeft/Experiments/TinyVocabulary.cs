using VlPeft.Data;
using VlPeft.Data.Synthetic;
using VlPeft.Text;
using VlPeft.Text.Tokenizers;

namespace VlPeft.Experiments;

/// <summary>
/// The tiny base model's WordPiece vocabulary: every word of the synthetic suite's captions, questions,
/// hints and the InstructBLIP PEFT prompt templates, so pretraining and the demo's fine-tuning tasks
/// share one vocabulary.
/// </summary>
public static class TinyVocabulary
{
    public static IReadOnlyList<string> Build(IEnumerable<string> extraCorpus)
    {
        var random = new Random(0);
        var balancer = new AnswerBalancer();
        var corpus = new List<string>(extraCorpus) { CaptionTask.Instruction };
        foreach (var family in QuestionFactory.ImageFamilies.Append("text"))
            for (int i = 0; i < 200; i++)
            {
                var q = QuestionFactory.Make(family, random, balancer);
                var record = new ChoiceRecord { Id = "0", Question = q.Question, Choices = q.Choices, Answer = q.Answer, Hint = q.Hint, Lecture = q.Lecture };
                var p = InstructBlipPeftPrompts.ScienceQa(record);
                corpus.Add(p.Instruction);
                corpus.AddRange(p.Candidates);
                corpus.Add(InstructBlipPeftPrompts.IconQa(record).Instruction);
                if (q.Scene != null) corpus.Add(q.Scene.Caption(random));
            }
        return WordPieceVocabulary.Build(corpus);
    }
}
