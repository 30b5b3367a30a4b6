using System.CommandLine;
using VlPeft.Models.Loading;

namespace VlPeft.Cli.Commands;

/// <summary>Checkpoints in other projects' formats → VlPeft/HF directories (the .pth files are read without running code).</summary>
static class ConvertCommand
{
    public static Command Create(CliConsole console) => new("convert", "Convert checkpoints of the papers' original code into HF-format directories")
    {
        MetaLlama(console), LavinAdapter(console), LavinBase(console), RoutingBase(console), Lavis(console),
    };

    static Option<string> Out() => new("--out") { Description = "Output directory", Required = true };

    static Command MetaLlama(CliConsole console)
    {
        var input = new Option<string>("--checkpoint") { Description = "Meta LLaMA directory: params.json + consolidated.NN.pth (+ tokenizer.model)", Required = true };
        var positions = new Option<int>("--max-position-embeddings") { Description = "Context length (LLaMA 2048, LLaMA-2 4096)", DefaultValueFactory = _ => 2048 };
        var output = Out();
        var command = new Command("meta-llama", "Meta-format LLaMA → HF LlamaForCausalLM names (wq/wk rows permuted for rotate_half RoPE)") { input, positions, output };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var config = MetaLlamaFormat.Convert(parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(positions));
            console.Out.WriteLine($"wrote LLaMA ({config.NumHiddenLayers} layers, hidden {config.HiddenSize}) to {parse.GetValue(output)}");
            return CliApp.Success;
        }));
        return command;
    }

    static Command LavinAdapter(CliConsole console)
    {
        var input = new Option<string>("--checkpoint") { Description = "A LaVIN checkpoint (.pth) holding its trained adapters, neck and modality token", Required = true };
        var temperature = new Option<double>("--temperature") { Description = "Router temperature (not stored by LaVIN: 10 for 7B, 5 for 13B)", DefaultValueFactory = _ => 10 };
        var clean = new Option<bool>("--clean-router") { Description = "Route ViT adapters by each image's [CLS] instead of LaVIN's image-0 behaviour" };
        var output = Out();
        var command = new Command("lavin-adapter", "LaVIN adapter checkpoint → BOTTLENECK adapter folder for a lavin base") { input, temperature, clean, output };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var config = LavinCheckpoint.Convert(parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(temperature), lavinQuirk: !parse.GetValue(clean));
            console.Out.WriteLine($"wrote a BOTTLENECK adapter (dim {config.AdapterDim}, groups {config.Groups}, router {config.Router.ToString().ToLowerInvariant()}) to {parse.GetValue(output)}");
            return CliApp.Success;
        }));
        return command;
    }

    static Command LavinBase(CliConsole console)
    {
        var llama = new Option<string>("--llama") { Description = "HF LLaMA directory (e.g. the output of convert meta-llama)", Required = true };
        var clip = new Option<string>("--clip") { Description = "HF CLIP directory (openai/clip-vit-large-patch14 or -336)", Required = true };
        var preset = new Option<string>("--preset") { Description = "lavin-7b, lavin-13b or bottleneck-adapter-7b", Required = true };
        var seed = new Option<int>("--seed") { Description = "Seed of the fresh neck and modality token", DefaultValueFactory = _ => 0 };
        var output = Out();
        var command = new Command("lavin-base", "HF LLaMA + HF CLIP → a LaVIN-style base checkpoint (model_type lavin)") { llama, clip, preset, seed, output };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            LavinCheckpoint.AssembleBase(parse.GetValue(llama)!, parse.GetValue(clip)!, parse.GetValue(preset)!, parse.GetValue(output)!, parse.GetValue(seed));
            console.Out.WriteLine($"wrote the {parse.GetValue(preset)} base to {parse.GetValue(output)}");
            return CliApp.Success;
        }));
        return command;
    }

    static Command RoutingBase(CliConsole console)
    {
        var vit = new Option<string>("--vit") { Description = "HF ViT directory (google/vit-base-patch16-224-in21k, vit-large-patch16-224-in21k)", Required = true };
        var text = new Option<string>("--text") { Description = "HF RoBERTa (→ VQA classifier) or GPT-2 (→ captioner) directory", Required = true };
        var answers = new Option<string?>("--answers") { Description = "The classifier's answer vocabulary, trainval_ans2label.json (default: 3,129 LABEL_i)" };
        var seed = new Option<int>("--seed") { Description = "Seed of the fresh classifier", DefaultValueFactory = _ => 0 };
        var output = Out();
        var command = new Command("routing-base", "HF ViT + HF RoBERTa or GPT-2 → the routing paper's vit_roberta_vqa or vit_gpt2_captioning base") { vit, text, answers, seed, output };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var labels = parse.GetValue(answers) is string file ? VlPeft.Data.Vqa.VqaKarpathyReader.ReadAnswerVocabulary(file) : null;
            using var model = RoutingCheckpoint.AssembleBase(parse.GetValue(vit)!, parse.GetValue(text)!, parse.GetValue(output)!, labels, parse.GetValue(seed));
            console.Out.WriteLine($"wrote a {model.ModelType} base to {parse.GetValue(output)}");
            return CliApp.Success;
        }));
        return command;
    }

    static Command Lavis(CliConsole console)
    {
        var input = new Option<string>("--checkpoint") { Description = "LAVIS .pth (BLIP-2 / InstructBLIP, or an InstructBLIP_PEFT fine-tuned checkpoint)", Required = true };
        var baseDirectory = new Option<string?>("--base") { Description = "HF BLIP-2/InstructBLIP directory the checkpoint is laid over (needed when it holds only trained parameters)" };
        var preset = new Option<string?>("--preset") { Description = "Or a model preset, when the checkpoint holds every parameter" };
        var output = Out();
        var command = new Command("lavis", "LAVIS BLIP-2/InstructBLIP .pth → HF names (EVA q/v biases fused, Qformer.bert → qformer, t5_proj → language_projection)") { input, baseDirectory, preset, output };
        command.SetAction(parse => CliApp.Guard(console, () =>
        {
            var (taken, total) = LavisCheckpoint.Convert(parse.GetValue(input)!, parse.GetValue(baseDirectory), parse.GetValue(preset), parse.GetValue(output)!);
            console.Out.WriteLine($"wrote {parse.GetValue(output)}: {taken:N0} of the model's {total:N0} parameters from the LAVIS checkpoint");
            return CliApp.Success;
        }));
        return command;
    }
}
