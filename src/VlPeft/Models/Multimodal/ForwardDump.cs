using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// Runs a composite once in eval mode on inputs named like the HF forward arguments and writes the
/// named intermediates in float32, for parity checks against Transformers.
/// </summary>
public static class ForwardDump
{
    public static readonly string[] OutputNames =
        { "vision_last_hidden_state", "qformer_query_output", "language_projection_output", "logits", "loss" };

    public static IReadOnlyDictionary<string, Tensor> Run(BlipForConditionalGeneration model, string inputsPath)
    {
        using var file = SafetensorsFile.Open(inputsPath);
        Tensor? Optional(string name) => file.Header.Contains(name) ? file.ReadTensor(name) : null;
        Tensor Required(string name) => Optional(name) ?? throw new BadInputException($"inputs lack '{name}'", inputsPath);

        var inputs = new VisionLanguageInputs(
            Required("pixel_values"),  // the patch embedding casts to its own dtype
            Required("input_ids").to(ScalarType.Int64),
            Optional("attention_mask")?.to(ScalarType.Int64),
            Optional("qformer_input_ids")?.to(ScalarType.Int64),
            Optional("qformer_attention_mask")?.to(ScalarType.Int64),
            Optional("decoder_input_ids")?.to(ScalarType.Int64),
            Optional("decoder_attention_mask")?.to(ScalarType.Int64),
            Optional("labels")?.to(ScalarType.Int64));
        if (model.Config.IsInstructBlip && inputs.QFormerInputIds is null)
            throw new BadInputException("InstructBLIP inputs need 'qformer_input_ids'", inputsPath);
        if (!model.Config.DecoderOnly && inputs.DecoderInputIds is null && inputs.Labels is null)
            throw new BadInputException("T5 inputs need 'decoder_input_ids' or 'labels'", inputsPath);

        model.eval();
        using var _ = torch.no_grad();
        var output = model.call(inputs);
        var result = new Dictionary<string, Tensor>
        {
            ["vision_last_hidden_state"] = output.VisionLastHiddenState.to(ScalarType.Float32),
            ["qformer_query_output"] = output.QFormerQueryOutput.to(ScalarType.Float32),
            ["language_projection_output"] = output.LanguageProjectionOutput.to(ScalarType.Float32),
            ["logits"] = output.Logits.to(ScalarType.Float32),
        };
        if (output.Loss is not null) result["loss"] = output.Loss.to(ScalarType.Float32);
        return result;
    }
}
