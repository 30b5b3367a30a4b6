using System.CommandLine;
using VlPeft.Models.Loading;
using VlPeft.Peft;

namespace VlPeft.Cli.Commands;

static class MergeCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "Base HF checkpoint directory", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "Adapter directory (adapter_config.json + adapter_model.safetensors)", Required = true };
        var output = new Option<string>("--out") { Description = "Directory for the merged checkpoint", Required = true };
        var command = new Command("merge", "Fold an adapter into its base model and write a plain HF-style checkpoint") { model, adapter, output };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            string baseDir = parse.GetValue(model)!, outDir = parse.GetValue(output)!;
            using var loaded = PretrainedModel.Load(baseDir);
            var peft = PeftFiles.Load(loaded, parse.GetValue(adapter)!);
            peft.MergeAndUnload(safe: true);
            PretrainedModel.Save(loaded, outDir);
            // Tokenizer files travel with the weights so the merged directory is self-contained.
            foreach (var file in Directory.GetFiles(baseDir).Where(f => !f.EndsWith(".safetensors") && !f.EndsWith(".safetensors.index.json") && Path.GetFileName(f) != "config.json"))
                File.Copy(file, Path.Combine(outDir, Path.GetFileName(file)), overwrite: true);
            foreach (var sub in Directory.GetDirectories(baseDir))
            {
                string target = Path.Combine(outDir, Path.GetFileName(sub));
                Directory.CreateDirectory(target);
                foreach (var file in Directory.GetFiles(sub)) File.Copy(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
            }
            console.Out.WriteLine($"merged {parse.GetValue(adapter)} into {outDir}");
            return CliApp.Success;
        }));
        return command;
    }
}
