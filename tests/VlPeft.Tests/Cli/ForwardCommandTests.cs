using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Tensors;
using VlPeft.Tests.Models;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Cli;

public class ForwardCommandTests
{
    [Fact]
    public void Writes_the_named_outputs_of_an_eval_forward()
    {
        torch.manual_seed(70);
        using var model = new BlipForConditionalGeneration(ModelPresets.Get("tiny-instructblip-t5"));
        using var dir = new TempDirectory();
        PretrainedModel.Save(model, dir.File("model"));
        var batch = TinyInputs.Batch(decoderOnly: false);
        SafetensorsWriter.Write(dir.File("inputs.safetensors"), new Dictionary<string, Tensor>
        {
            ["pixel_values"] = batch.PixelValues, ["input_ids"] = batch.InputIds, ["attention_mask"] = batch.AttentionMask!,
            ["qformer_input_ids"] = batch.QFormerInputIds!, ["qformer_attention_mask"] = batch.QFormerAttentionMask!, ["labels"] = batch.Labels!,
        });

        var (code, output, error) = CliRunner.Run("forward", "--model", dir.File("model"), "--inputs", dir.File("inputs.safetensors"), "--out", dir.File("out.safetensors"));
        Assert.True(code == 0, error);
        Assert.Contains("logits", output);

        model.eval();
        VisionLanguageOutput expected;
        using (torch.no_grad()) expected = model.call(batch);
        using var file = SafetensorsFile.Open(dir.File("out.safetensors"));
        Assert.Equal(new[] { "vision_last_hidden_state", "qformer_query_output", "language_projection_output", "logits", "loss" }.OrderBy(n => n), file.Header.Tensors.Select(t => t.Name).OrderBy(n => n));
        Assert.All(file.Header.Tensors, t => Assert.Equal("F32", t.DType));
        TensorAssert.Close(expected.Intermediates["vision_last_hidden_state"], file.ReadTensor("vision_last_hidden_state"), 1e-6);
        TensorAssert.Close(expected.Intermediates["qformer_query_output"], file.ReadTensor("qformer_query_output"), 1e-6);
        TensorAssert.Close(expected.Logits, file.ReadTensor("logits"), 1e-5);
        Assert.Equal(expected.Loss!.item<float>(), file.ReadTensor("loss").item<float>(), 5);

        SafetensorsWriter.Write(dir.File("bad.safetensors"), new Dictionary<string, Tensor> { ["pixel_values"] = batch.PixelValues });
        var bad = CliRunner.Run("forward", "--model", dir.File("model"), "--inputs", dir.File("bad.safetensors"), "--out", dir.File("x.safetensors"));
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("inputs lack 'input_ids'", bad.Err);

        // Inputs that do not fit the model: one clear line each, before any tensor op.
        var cases = new (string Name, Tensor Value, string Message)[]
        {
            ("input_ids", batch.InputIds + 100000, "input_ids holds ids outside [0, "),
            ("labels", batch.Labels! - 200, "labels holds ids outside [0, "),
            ("pixel_values", torch.randn(2, 3, 16, 16), "pixel_values must be [batch, 3, 32, 32], got [2, 3, 16, 16]"),
            ("pixel_values", torch.randn(3, 3, 32, 32), "input_ids must be [3, length]"),
            ("pixel_values", torch.randn(2, 1, 32, 32), "pixel_values must be [batch, 3, 32, 32]"),
        };
        foreach (var (name, value, message) in cases)
        {
            var inputs = new Dictionary<string, Tensor>
            {
                ["pixel_values"] = batch.PixelValues, ["input_ids"] = batch.InputIds, ["qformer_input_ids"] = batch.QFormerInputIds!, ["labels"] = batch.Labels!,
            };
            inputs[name] = value;
            SafetensorsWriter.Write(dir.File("wrong.safetensors"), inputs);
            var wrong = CliRunner.Run("forward", "--model", dir.File("model"), "--inputs", dir.File("wrong.safetensors"), "--out", dir.File("x.safetensors"));
            Assert.Equal(2, wrong.ExitCode);
            Assert.Contains(message, wrong.Err);
            Assert.Contains("wrong.safetensors", wrong.Err);
        }
    }
}
