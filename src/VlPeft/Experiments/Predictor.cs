using VlPeft.Data;
using VlPeft.Evaluation;
using VlPeft.Models;
using VlPeft.Text;

namespace VlPeft.Experiments;

/// <summary>
/// Answers one question about one image the way the Q-Former PEFT paper's evaluation does: with
/// choices, the ScienceQA prompt and candidate ranking by LM loss; without, the VizWiz instruction and
/// generation.
/// </summary>
public sealed class Predictor
{
    readonly VisionLanguageModel model;
    readonly VisionLanguageProcessor processor;

    public Predictor(VisionLanguageModel model, VisionLanguageProcessor processor)
    {
        this.model = model;
        this.processor = processor;
    }

    public string Answer(string? imagePath, string question, IReadOnlyList<string>? choices = null, string hint = "", GenerationOptions? generation = null)
    {
        if (choices is null)
            return new TextGenerator(model, processor).Generate(imagePath, InstructBlipPeftPrompts.VizWiz(question), generation);
        if (choices.Count == 0 || choices.Any(string.IsNullOrWhiteSpace))
            throw new BadInputException("choices must be non-empty strings");
        var record = new ChoiceRecord { Id = "0", Question = question, Choices = choices, Answer = 0, Hint = hint };
        var prompt = InstructBlipPeftPrompts.ScienceQa(record);
        return choices[new CandidateRanker(model, processor).Rank(imagePath, prompt.Instruction, prompt.Candidates).Best];
    }
}
