using System.CommandLine;
using VlPeft.Models.Loading;
using VlPeft.Peft;

namespace VlPeft.Cli.Commands;

static class MergeCommand
{
    public static Command Create(CliConsole console)
    {
        var model = SharedOptions.Model("Base HF checkpoint directory");
        var adapter = SharedOptions.RequiredAdapter();
        var output = new Option<string>("--out") { Description = "Directory for the merged checkpoint", Required = true };
        var command = new Command("merge", "Fold an adapter into its base model and write a plain HF-style checkpoint") { model, adapter, output };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            string baseDir = parse.GetValue(model)!, outDir = parse.GetValue(output)!;
            using var loaded = PretrainedModel.Load(baseDir);
            var peft = PeftFiles.LoadAll(loaded, parse.GetValue(adapter)!);
            peft.MergeAndUnload(safe: true);
            PretrainedModel.Save(loaded, outDir);
            PretrainedModel.CopyAuxiliaryFiles(baseDir, outDir); // tokenizer files travel with the weights
            console.Out.WriteLine($"merged {parse.GetValue(adapter)} into {outDir}");
            return CliApp.Success;
        }));
        return command;
    }
}
