using static TorchSharp.torch;

namespace VlPeft.Models;

/// <summary>Checks of user-supplied model inputs shared by the families' <see cref="VisionLanguageModel.CheckInputs"/>.</summary>
static class InputChecks
{
    public static void Ids(string name, Tensor? ids, long batch, long vocab, bool allowIgnore = false)
    {
        if (ids is null) return;
        if (ids.dim() != 2 || ids.shape[0] != batch)
            throw new BadInputException($"{name} must be [{batch}, length] like pixel_values' batch, got [{string.Join(", ", ids.shape)}]");
        if (ids.numel() == 0) return;
        var valid = ids.ge(0).logical_and(ids.lt(vocab));
        if (allowIgnore) valid = valid.logical_or(ids.eq(-100));
        if (!valid.all().item<bool>())
            throw new BadInputException($"{name} holds ids outside [0, {vocab}){(allowIgnore ? " (and -100)" : "")}: min {ids.min().item<long>()}, max {ids.max().item<long>()}");
    }

    public static void Mask(string name, Tensor? mask, Tensor? ids)
    {
        if (mask is null) return;
        if (ids is null || !mask.shape.SequenceEqual(ids.shape))
            throw new BadInputException($"{name} must have the shape of its ids, got [{string.Join(", ", mask.shape)}]");
    }
}
