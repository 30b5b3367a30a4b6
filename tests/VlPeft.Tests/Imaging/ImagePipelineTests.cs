using TorchSharp;
using VlPeft.Imaging;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Imaging;

public class ImagePipelineTests
{
    static readonly byte[] TwoByTwo = { 255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30 }; // red green / blue (10,20,30)

    [Fact]
    public void Decoded_and_normalized_values_equal_the_hand_computation()
    {
        using var dir = new TempDirectory();
        PngWriter.Write(dir.File("t.png"), 2, 2, TwoByTwo);
        using var decoded = ImagePipeline.Decode(dir.File("t.png"));
        Assert.Equal(new long[] { 3, 2, 2 }, decoded.shape);
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 2; x++)
                for (int c = 0; c < 3; c++)
                    Assert.Equal(TwoByTwo[(y * 2 + x) * 3 + c] / 255f, decoded[c, y, x].item<float>(), 6);

        var pipeline = new ImagePipeline(2, ImageNormalization.Clip);
        using var pixels = pipeline.Eval(dir.File("t.png"));
        // Pixel (1, 1) channel 2 = 30/255, normalized with CLIP's blue mean/std.
        Assert.Equal((30 / 255.0 - 0.40821073) / 0.27577711, pixels[2, 1, 1].item<float>(), 5);
        Assert.Equal((255 / 255.0 - 0.48145466) / 0.26862954, pixels[0, 0, 0].item<float>(), 5);
        var imagenet = new ImagePipeline(2, ImageNormalization.ImageNet).Eval(dir.File("t.png"));
        Assert.Equal((0 - 0.456) / 0.224, imagenet[1, 0, 0].item<float>(), 5);
    }

    [Fact]
    public void Resizing_keeps_a_constant_image_constant_and_reaches_the_size()
    {
        using var dir = new TempDirectory();
        var rgb = Enumerable.Range(0, 10 * 6).SelectMany(_ => new byte[] { 51, 102, 204 }).ToArray();
        PngWriter.Write(dir.File("c.png"), 10, 6, rgb);
        using var pixels = new ImagePipeline(8, new ImageNormalization(new[] { 0.0, 0, 0 }, new[] { 1.0, 1, 1 })).Eval(dir.File("c.png"));
        Assert.Equal(new long[] { 3, 8, 8 }, pixels.shape);
        TensorAssert.Close(torch.tensor(new[] { 0.2f, 0.4f, 0.8f }).view(3, 1, 1).expand(3, 8, 8), pixels, 1e-5);
    }

    [Fact]
    public void Training_augmentation_is_deterministic_under_a_seed_and_crops_within_the_scale_range()
    {
        using var dir = new TempDirectory();
        var random = new Random(3);
        var rgb = Enumerable.Range(0, 32 * 32 * 3).Select(_ => (byte)random.Next(256)).ToArray();
        PngWriter.Write(dir.File("r.png"), 32, 32, rgb);
        var pipeline = new ImagePipeline(16, ImageNormalization.Clip);
        using var a = pipeline.Train(dir.File("r.png"), new Random(11));
        using var b = pipeline.Train(dir.File("r.png"), new Random(11));
        using var c = pipeline.Train(dir.File("r.png"), new Random(12));
        TensorAssert.Close(a, b, 0);
        Assert.False(torch.allclose(a, c));
        var boxes = new Random(5);
        for (int i = 0; i < 200; i++)
        {
            var (top, left, h, w) = ImagePipeline.RandomResizedCropBox(100, 80, boxes);
            Assert.InRange(h * w, 0.5 * 8000 * 0.97, 8000);   // scale 0.5–1 (rounding slack)
            Assert.InRange((double)w / h, 0.72, 1.36);        // ratio 3/4–4/3, plus rounding to whole pixels
            Assert.True(top >= 0 && left >= 0 && top + h <= 100 && left + w <= 80);
        }
    }

    [Fact]
    public void Missing_and_undecodable_images_name_the_file()
    {
        using var dir = new TempDirectory();
        Assert.Contains("not found", Assert.Throws<BadInputException>(() => ImagePipeline.Decode(dir.File("none.png"))).Message);
        File.WriteAllText(dir.File("bad.png"), "not an image");
        var e = Assert.Throws<BadInputException>(() => ImagePipeline.Decode(dir.File("bad.png")));
        Assert.Equal(dir.File("bad.png"), e.File);
    }
}
