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
        var model = SharedOptions.Model();
        var adapter = SharedOptions.Adapter();
        var quantize = SharedOptions.Quantize();
        var quantizeEmbeddings = SharedOptions.QuantizeEmbeddings();
        var image = new Option<string>("--image") { Description = "Image file (PNG or JPEG)", Required = true };
        var question = new Option<string>("--question") { Required = true };
        var choices = new Option<string?>("--choices") { Description = "Options separated by '|': the answer is ranked among them (ScienceQA prompt); without, it is generated" };
        var hint = new Option<string>("--hint") { Description = "Context for the ScienceQA prompt", DefaultValueFactory = _ => "" };
        var command = new Command("predict", "Answer one question about one image") { model, adapter, quantize, quantizeEmbeddings, image, question, choices, hint };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            string picture = parse.GetValue(image)!;
            VlPeft.Imaging.ImagePipeline.Decode(picture).Dispose(); // a clear error for a missing or broken image, before loading the model
            var (loaded, processor) = ExperimentRunner.LoadForInference(parse.GetValue(model)!, parse.GetValue(adapter), parse.GetValue(quantize), parse.GetValue(quantizeEmbeddings));
            var options = parse.GetValue(choices)?.Split('|');
            console.Out.WriteLine(new Predictor(loaded, processor).Answer(picture, parse.GetValue(question)!, options, parse.GetValue(hint)!));
            return CliApp.Success;
        }));
        return command;
    }
}
