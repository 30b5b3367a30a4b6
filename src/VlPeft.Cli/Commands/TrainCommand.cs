using System.CommandLine;
using System.Globalization;
using VlPeft.Experiments;

namespace VlPeft.Cli.Commands;

static class TrainCommand
{
    public static Command Create(CliConsole console)
    {
        var config = SharedOptions.ExperimentFile();
        var data = SharedOptions.Data();
        var model = SharedOptions.ModelOverride();
        var quantize = SharedOptions.Quantize();
        var quantizeEmbeddings = SharedOptions.QuantizeEmbeddings();
        var output = new Option<string?>("--out") { Description = "Run directory (default: the file's output:, else runs/<name>)" };
        var epochs = new Option<int?>("--epochs") { Description = "Override the number of epochs" };
        var resume = new Option<bool>("--resume") { Description = "Continue from the run directory's last checkpoint" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a run the run directory already holds" };
        var command = new Command("train", "Train an experiment file: PEFT fine-tuning, or pretraining of a tiny base") { config, data, model, quantize, quantizeEmbeddings, output, epochs, resume, overwrite };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            string file = parse.GetValue(config)!;
            var experiment = ExperimentConfig.Load(file);
            experiment.Data = parse.GetValue(data) ?? experiment.Data;
            experiment.Model.Path = parse.GetValue(model) ?? experiment.Model.Path;
            if (parse.GetValue(quantize) is string q) experiment.Model.Quantize = q;
            if (parse.GetValue(quantizeEmbeddings)) experiment.Model.QuantizeEmbeddings = true;
            if (parse.GetValue(epochs) is int e) experiment.Training.Epochs = e;
            string runDir = parse.GetValue(output) ?? experiment.Output ?? Path.Combine("runs", experiment.Name);
            if (parse.GetValue(resume) && parse.GetValue(overwrite)) throw new BadInputException("give --resume or --overwrite, not both");
            var result = ExperimentRunner.Run(experiment, runDir, parse.GetValue(resume), file, parse.GetValue(overwrite));
            string F(double? v) => v is double d && double.IsFinite(d) ? d.ToString("F2", CultureInfo.InvariantCulture) : "-";
            console.Out.WriteLine($"{result.Name}: trainable {result.TrainableParameters:N0} of {result.TotalParameters:N0} ({F(result.TrainablePercentOfBaseline)}% of the baseline outside the frozen towers); best val {F(result.ValidationMetric)}; test {F(result.TestAccuracy)} ({result.TestMetric}); {F(result.Seconds)} s");
            console.Out.WriteLine($"run directory: {result.RunDirectory}");
            return CliApp.Success;
        }));
        return command;
    }
}
