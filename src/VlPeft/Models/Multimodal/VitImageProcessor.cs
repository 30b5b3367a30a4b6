using System.Text.Json;
using VlPeft.Imaging;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// The routing pipelines' images: the ViT checkpoint's preprocessor_config.json (image_mean, image_std) when the
/// directory has one, else ViTImageProcessor's defaults (mean = std = 0.5); resized to the config's image size.
/// </summary>
static class VitImageProcessor
{
    public static ImagePipeline Load(string? directory, int imageSize)
    {
        var normalization = new ImageNormalization(new[] { 0.5, 0.5, 0.5 }, new[] { 0.5, 0.5, 0.5 });
        string? file = directory is null ? null : Path.Combine(directory, "preprocessor_config.json");
        if (file is not null && File.Exists(file))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(file));
                double[]? Read(string key) => doc.RootElement.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Array
                    ? v.EnumerateArray().Select(x => x.GetDouble()).ToArray() : null;
                var mean = Read("image_mean") ?? normalization.Mean;
                var std = Read("image_std") ?? normalization.Std;
                if (mean.Length != 3 || std.Length != 3 || std.Any(s => !(s > 0))) throw new BadInputException("image_mean and image_std must be 3 numbers (std > 0)", file);
                normalization = new ImageNormalization(mean, std);
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
            {
                throw new BadInputException($"preprocessor_config.json cannot be read: {e.Message}", file);
            }
        }
        return new ImagePipeline(imageSize, normalization);
    }
}
