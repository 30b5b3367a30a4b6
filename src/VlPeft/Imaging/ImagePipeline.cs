using StbImageSharp;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Imaging;

/// <summary>Normalization constants of the papers' pipelines (models.md §11).</summary>
public sealed record ImageNormalization(double[] Mean, double[] Std)
{
    /// <summary>OpenAI CLIP mean/std, used by BLIP-2 / InstructBLIP.</summary>
    public static ImageNormalization Clip { get; } = new(new[] { 0.48145466, 0.4578275, 0.40821073 }, new[] { 0.26862954, 0.26130258, 0.27577711 });
    /// <summary>ImageNet mean/std, used by LaVIN.</summary>
    public static ImageNormalization ImageNet { get; } = new(new[] { 0.485, 0.456, 0.406 }, new[] { 0.229, 0.224, 0.225 });
}

/// <summary>
/// Image files → model pixels: decode PNG/JPEG (StbImageSharp), resize to size×size with bicubic +
/// antialias, scale to [0, 1], normalize. Training adds LAVIS's RandomResizedCrop(scale 0.5–1,
/// ratio 3/4–4/3) and a horizontal flip, drawn from the caller's seeded Random.
/// </summary>
public sealed class ImagePipeline
{
    public ImagePipeline(int size, ImageNormalization normalization)
    {
        Size = size;
        Normalization = normalization;
    }

    public int Size { get; }
    public ImageNormalization Normalization { get; }

    /// <summary>Decodes to a [3, H, W] float tensor in [0, 1].</summary>
    public static Tensor Decode(string path)
    {
        if (!File.Exists(path)) throw new BadInputException("image file not found", path);
        ImageResult image;
        byte[] data = ReadBounded(path);
        if (data.Length >= 2 && data[0] == 0xFF && data[1] == 0xD8) CheckJpegStructure(data, path);
        try
        {
            image = ImageResult.FromMemory(data, ColorComponents.RedGreenBlue);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The decoder's messages can be raw bytes (a truncated PNG gives NULs): keep only readable ones.
            bool readable = e.Message.Length > 0 && e.Message.All(c => !char.IsControl(c));
            throw new BadInputException($"image cannot be decoded: {(readable ? e.Message : "truncated or corrupt image data")}", path);
        }
        if (image?.Data is null || image.Width <= 0 || image.Height <= 0) throw new BadInputException("image cannot be decoded", path);
        using var bytes = torch.tensor(image.Data, new long[] { image.Height, image.Width, 3 });
        return bytes.permute(2, 0, 1).to(ScalarType.Float32).div(255.0);
    }

    /// <summary>
    /// The JPEG decoder loops forever on some truncated files (it reads zeros past the end), so the structure is walked
    /// first: every header segment up to the scan must lie inside the file, and the scan must end with an EOI marker.
    /// </summary>
    static void CheckJpegStructure(byte[] data, string path)
    {
        int at = 2;
        while (true)
        {
            if (at + 4 > data.Length || data[at] != 0xFF) throw new BadInputException("image cannot be decoded: truncated or corrupt JPEG headers", path);
            byte marker = data[at + 1];
            if (marker == 0xFF) { at++; continue; }                                  // fill bytes
            int length = (data[at + 2] << 8) | data[at + 3];
            if (length < 2 || at + 2 + length > data.Length) throw new BadInputException("image cannot be decoded: a JPEG segment runs past the end of the file", path);
            at += 2 + length;
            if (marker == 0xDA) break;                                               // start of scan: entropy-coded data follows
        }
        for (int i = data.Length - 2; i >= at; i--)
            if (data[i] == 0xFF && data[i + 1] == 0xD9) return;
        throw new BadInputException("image cannot be decoded: the JPEG data is truncated (no end-of-image marker)", path);
    }

    /// <summary>Largest image file read (a 64-megapixel PNG is far below it): anything larger, or endless (/dev/zero), is refused.</summary>
    public const long MaxImageBytes = 256L << 20;

    static byte[] ReadBounded(string path)
    {
        using var stream = File.OpenRead(path);
        using var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int read;
        while ((read = stream.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (buffer.Length + read > MaxImageBytes)
                throw new BadInputException($"image file is larger than {MaxImageBytes >> 20} MiB (or not a regular file)", path);
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    /// <summary>Evaluation transform: resize to Size×Size (bicubic, antialias) and normalize → [3, Size, Size].</summary>
    /// <summary>The eval transform, or a blank image for a record without one.</summary>
    public Tensor EvalOrBlank(string? path) => path is null ? torch.zeros(3, Size, Size) : Eval(path);

    /// <summary>[B, 3, size, size] of <see cref="EvalOrBlank"/>.</summary>
    public Tensor EvalBatch(IEnumerable<string?> paths) => torch.stack(paths.Select(EvalOrBlank).ToArray());

    public Tensor Eval(string path)
    {
        using var scope = torch.NewDisposeScope();
        return Normalize(Resize(Decode(path))).MoveToOuterDisposeScope();
    }

    /// <summary>Training transform: random resized crop + horizontal flip (p = 0.5), then normalize.</summary>
    public Tensor Train(string path, Random random)
    {
        using var scope = torch.NewDisposeScope();
        var image = Decode(path);
        var (top, left, h, w) = RandomResizedCropBox((int)image.shape[1], (int)image.shape[2], random);
        var crop = Resize(image[.., top..(top + h), left..(left + w)]);
        if (random.NextDouble() < 0.5) crop = crop.flip(2);
        return Normalize(crop).MoveToOuterDisposeScope();
    }

    Tensor Resize(Tensor chw)
    {
        if (chw.shape[1] == Size && chw.shape[2] == Size) return chw;
        var resized = F.interpolate(chw.unsqueeze(0), new long[] { Size, Size }, mode: InterpolationMode.Bicubic, align_corners: false, antialias: true);
        return resized.squeeze(0).clamp(0, 1);
    }

    public Tensor Normalize(Tensor chw)
    {
        var mean = torch.tensor(Normalization.Mean, ScalarType.Float32).view(3, 1, 1);
        var std = torch.tensor(Normalization.Std, ScalarType.Float32).view(3, 1, 1);
        return (chw - mean) / std;
    }

    /// <summary>torchvision RandomResizedCrop.get_params with scale (0.5, 1) and ratio (3/4, 4/3).</summary>
    public static (int Top, int Left, int Height, int Width) RandomResizedCropBox(int height, int width, Random random, double minScale = 0.5, double maxScale = 1.0)
    {
        double area = height * width;
        double logLow = Math.Log(3.0 / 4), logHigh = Math.Log(4.0 / 3);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double target = area * (minScale + (maxScale - minScale) * random.NextDouble());
            double aspect = Math.Exp(logLow + (logHigh - logLow) * random.NextDouble());
            int w = (int)Math.Round(Math.Sqrt(target * aspect));
            int h = (int)Math.Round(Math.Sqrt(target / aspect));
            if (w > 0 && w <= width && h > 0 && h <= height)
                return (random.Next(height - h + 1), random.Next(width - w + 1), h, w);
        }
        // Fallback: a centre crop clamped to the ratio range.
        double ratio = (double)width / height;
        int cw = width, ch = height;
        if (ratio < 3.0 / 4) ch = (int)Math.Round(width / (3.0 / 4));
        else if (ratio > 4.0 / 3) cw = (int)Math.Round(height * (4.0 / 3));
        return ((height - ch) / 2, (width - cw) / 2, ch, cw);
    }
}
