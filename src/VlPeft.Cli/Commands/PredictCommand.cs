using System.CommandLine;
using VlPeft.Data;
using VlPeft.Evaluation;
using VlPeft.Experiments;
using VlPeft.Text;

namespace VlPeft.Cli.Commands;

static class PredictCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "HF checkpoint directory", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "Adapter directory (HF PEFT format)" };
        var image = new Option<string>("--image") { Description = "Image file (PNG or JPEG)", Required = true };
        var question = new Option<string>("--question") { Required = true };
        var choices = new Option<string?>("--choices") { Description = "Options separated by '|': the answer is ranked among them (ScienceQA prompt)" };
        var hint = new Option<string>("--hint") { Description = "Context for the ScienceQA prompt", DefaultValueFactory = _ => "" };
        var command = new Command("predict", "Answer one question about one image") { model, adapter, image, question, choices, hint };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var (loaded, processor) = ExperimentRunner.LoadForInference(parse.GetValue(model)!, parse.GetValue(adapter));
            string picture = parse.GetValue(image)!;
            VlPeft.Imaging.ImagePipeline.Decode(picture).Dispose(); // a clear error for a missing or broken image
            if (parse.GetValue(choices) is string options)
            {
                var record = new ChoiceRecord { Id = "0", Question = parse.GetValue(question)!, Choices = options.Split('|'), Answer = 0, Hint = parse.GetValue(hint)! };
                var prompt = InstructBlipPeftPrompts.ScienceQa(record);
                var (best, _) = new CandidateRanker(loaded, processor).Rank(picture, prompt.Instruction, prompt.Candidates);
                console.Out.WriteLine(record.Choices[best]);
            }
            else
                console.Out.WriteLine(new TextGenerator(loaded, processor).Generate(picture, InstructBlipPeftPrompts.VizWiz(parse.GetValue(question)!)));
            return CliApp.Success;
        }));
        return command;
    }
}
