using static TorchSharp.torch;

namespace VlPeft.Models;

/// <summary>Checks of user-supplied model inputs shared by the families' <see cref="VisionLanguageModel.CheckInputs"/>.</summary>
static class InputChecks
{
    /// <summary>pixel_values must be [batch, channels, size, size] for this vision tower; returns the batch size.</summary>
    public static long Pixels(Tensor pixelValues, Configs.VisionConfig v)
    {
        var pixels = pixelValues.shape;
        if (pixels.Length != 4 || pixels[1] != v.NumChannels || pixels[2] != v.ImageSize || pixels[3] != v.ImageSize)
            throw new BadInputException($"pixel_values must be [batch, {v.NumChannels}, {v.ImageSize}, {v.ImageSize}], got [{string.Join(", ", pixels)}]");
        return pixels[0];
    }

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
