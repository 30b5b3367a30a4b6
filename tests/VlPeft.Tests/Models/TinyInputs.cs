using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Multimodal;
using static TorchSharp.torch;

namespace VlPeft.Tests.Models;

static class TinyInputs
{
    /// <summary>A small batch that fits every tiny preset (image 32, vocabularies ≥ 64).</summary>
    public static VisionLanguageInputs Batch(bool decoderOnly, ScalarType dtype = ScalarType.Float32)
    {
        var pixels = torch.randn(2, 3, 32, 32).to(dtype);
        var qIds = torch.tensor(new long[] { 5, 9, 3, 0, 7, 2, 11, 4 }).view(2, 4);
        var qMask = torch.tensor(new long[] { 1, 1, 1, 0, 1, 1, 1, 1 }).view(2, 4);
        var ids = torch.tensor(new long[] { 10, 20, 30, 1, 40, 50, 60, 1 }).view(2, 4);
        var labels = decoderOnly ? torch.tensor(new long[] { -100, 20, 30, 1, -100, -100, 60, 1 }).view(2, 4) : torch.tensor(new long[] { 7, 8, 1, 9, 1, -100 }).view(2, 3);
        return new VisionLanguageInputs(pixels, ids, torch.ones_like(ids), qIds, qMask, Labels: labels);
    }
}
