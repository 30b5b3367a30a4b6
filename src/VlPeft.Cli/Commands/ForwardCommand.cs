using System.CommandLine;
using VlPeft.Models.Loading;
using VlPeft.Models;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Cli.Commands;

static class ForwardCommand
{
    public static Command Create(CliConsole console)
    {
        var model = SharedOptions.Model();
        var inputs = new Option<string>("--inputs") { Description = "safetensors file with pixel_values, input_ids, … named as the HF forward arguments", Required = true };
        var output = new Option<string>("--out") { Description = "safetensors file to write the named outputs to", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "Weights dtype: f32 or bf16", DefaultValueFactory = _ => "f32" };
        dtype.AcceptOnlyFromAmong("f32", "bf16");
        var command = new Command("forward", "Run a model once (eval mode) and write its named intermediates (InstructBLIP: vision, Q-Former, projection), logits and loss for parity checks")
        {
            model, inputs, output, dtype,
        };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var options = new PretrainedOptions { DType = parse.GetValue(dtype) == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32 };
            using var loaded = PretrainedModel.Load(parse.GetValue(model)!, options);
            var result = ForwardDump.Run(loaded, parse.GetValue(inputs)!);
            SafetensorsWriter.Write(parse.GetValue(output)!, result, new Dictionary<string, string> { ["format"] = "pt" });
            foreach (var (name, tensor) in result)
                console.Out.WriteLine($"{name,-28} [{string.Join(", ", tensor.shape)}]");
            return CliApp.Success;
        }));
        return command;
    }
}
