using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Models;

/// <summary>
/// Runs a composite once in eval mode on inputs named like the HF forward arguments and writes the
/// model's named intermediates, the logits and the loss in float32, for parity checks against Transformers.
/// </summary>
public static class ForwardDump
{
    public static IReadOnlyDictionary<string, Tensor> Run(VisionLanguageModel model, string inputsPath)
    {
        using var file = SafetensorsFile.Open(inputsPath);
        Tensor? Optional(string name) => file.Header.Contains(name) ? file.ReadTensor(name) : null;
        Tensor? Ids(string name) => Optional(name)?.to(ScalarType.Int64);

        var inputs = new VisionLanguageInputs(
            Optional("pixel_values") ?? throw new BadInputException("inputs lack 'pixel_values'", inputsPath),  // the patch embedding casts to its own dtype
            Ids("input_ids") ?? throw new BadInputException("inputs lack 'input_ids'", inputsPath),
            Ids("attention_mask"), Ids("qformer_input_ids"), Ids("qformer_attention_mask"),
            Ids("decoder_input_ids"), Ids("decoder_attention_mask"), Ids("labels"));
        model.eval();
        using var _ = torch.no_grad();
        VisionLanguageOutput output;
        try
        {
            model.CheckInputs(inputs);
            output = model.call(inputs);
        }
        catch (BadInputException e) when (e.File is null)
        {
            throw new BadInputException(e.Message, inputsPath);
        }
        var result = output.Intermediates.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32));
        result["logits"] = output.Logits.to(ScalarType.Float32);
        if (output.Loss is not null) result["loss"] = output.Loss.to(ScalarType.Float32);
        return result;
    }
}
