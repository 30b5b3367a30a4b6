using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Peft;
using VlPeft.Experiments;
using VlPeft.Tests.Models;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Cli;

public class MergeCommandTests
{
    [Fact]
    public void Merged_checkpoint_reproduces_the_adapted_model()
    {
        using var dir = new TempDirectory();
        var config = ModelPresets.Get("tiny-instructblip-t5");
        using var model = new BlipForConditionalGeneration(config);
        PretrainedModel.Save(model, dir.File("base"));
        File.WriteAllText(dir.File("base/vocab.txt"), "x");
        var peft = BlipPeftPresets.Get("qformer-lora-all", config, 2).Apply(model)!;
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.Contains("lora_B") || p.name == "query_tokens")) p.normal_(0, 0.2);
        PeftFiles.Save(peft, dir.File("adapter"));
        model.eval();
        var batch = TinyInputs.Batch(decoderOnly: false);
        Tensor expected;
        using (torch.no_grad()) expected = model.call(batch).Logits;

        var (code, _, error) = CliRunner.Run("merge", "--model", dir.File("base"), "--adapter", dir.File("adapter"), "--out", dir.File("merged"));
        Assert.True(code == 0, error);
        using var merged = PretrainedModel.Load(dir.File("merged"));   // strict: a plain checkpoint, no adapter keys
        merged.eval();
        using (torch.no_grad()) TensorAssert.Close(expected, merged.call(batch).Logits, 1e-5);
        Assert.True(File.Exists(dir.File("merged/vocab.txt")));
        // The trained query tokens travel in the adapter file under their own name and come back on load.
        using var reloaded = PretrainedModel.Load(dir.File("base"));
        PeftFiles.Load(reloaded, dir.File("adapter"));
        TensorAssert.Close(model.named_parameters().Single(p => p.name == "query_tokens").parameter,
            reloaded.named_parameters().Single(p => p.name == "query_tokens").parameter, 0);
    }

    [Fact]
    public void Merge_of_a_routed_adapter_is_refused_with_the_reason_and_writes_nothing()
    {
        using var dir = new TempDirectory();
        var config = VitRobertaVqaConfig.Parse(ModelPresets.Json("tiny-vit-roberta-vqa"), "preset");
        using var model = new VitRobertaForVqa(config);
        PretrainedModel.Save(model, dir.File("base"));
        File.WriteAllLines(dir.File("base/vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red" });
        var peft = RoutingPeftPresets.Roberta("roberta-routed-lora", 2).Apply(model)!;
        PeftFiles.Save(peft, dir.File("adapter"));

        var (code, _, error) = CliRunner.Run("merge", "--model", dir.File("base"), "--adapter", dir.File("adapter"), "--out", dir.File("merged"));
        Assert.Equal(2, code);
        Assert.Contains("cannot be merged", error);
        Assert.Contains("visual feature", error);
        Assert.False(File.Exists(dir.File("merged/model.safetensors")));
    }
}
