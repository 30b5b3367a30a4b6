using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;
using VlPeft.Nn;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Models;

/// <summary>Sites sit where the papers put adapters: on the normed input in pre-LN blocks, after the output dense in post-LN ones.</summary>
public class AdapterSitePlacementTests
{
    /// <summary>Records what passes through a site and returns it unchanged (or a fixed replacement).</summary>
    sealed class Probe : nn.Module<Tensor, Tensor>
    {
        readonly Func<Tensor, Tensor>? replace;
        public Probe(Func<Tensor, Tensor>? replace = null) : base("Probe") => this.replace = replace;
        public List<Tensor> Seen { get; } = new();
        public override Tensor forward(Tensor x)
        {
            Seen.Add(x.detach().clone().DetachFromDisposeScope());
            return replace?.Invoke(x) ?? x.alias();
        }
    }

    static AdapterSite Site(nn.Module model, string path) =>
        (AdapterSite)model.named_modules().Single(m => m.name == path).module;

    [Theory]
    [InlineData("tiny-instructblip-vicuna", "language_model.model.layers.0.adapter_before_attention")]
    [InlineData("tiny-instructblip-vicuna", "language_model.model.layers.1.adapter_before_ffn")]
    [InlineData("tiny-instructblip-t5", "language_model.encoder.block.0.layer.0.adapter_before_attention")]
    [InlineData("tiny-instructblip-t5", "vision_model.encoder.layers.0.adapter_before_attention")]
    public void Pre_ln_sites_take_the_normed_input(string preset, string sitePath)
    {
        torch.manual_seed(5);
        using var model = (BlipForConditionalGeneration)ModelFamilies.FromPreset(preset);
        var probe = new Probe();
        Site(model, sitePath).Attach("probe", probe);
        model.eval();
        using (torch.no_grad()) model.call(TinyInputs.Batch(model.Config.DecoderOnly));
        // Norms at initialisation have weight 1 (bias 0): RMSNorm rows have RMS 1; LayerNorm rows have mean 0 and variance 1.
        // The raw residual stream (embeddings at std 0.02, or patch embeddings) has neither.
        var x = probe.Seen.Single().to(ScalarType.Float64);
        var rms = x.pow(2).mean(new long[] { -1 }).sqrt();
        var centred = (x - x.mean(new long[] { -1 }, keepdim: true)).pow(2).mean(new long[] { -1 }).sqrt();
        bool rmsNormed = rms.sub(1).abs().max().item<double>() < 1e-3, layerNormed = centred.sub(1).abs().max().item<double>() < 1e-3;
        Assert.True(rmsNormed || layerNormed, $"site input RMS in [{rms.min().item<double>()}, {rms.max().item<double>()}]");
    }

    [Fact]
    public void Post_ln_sites_sit_after_the_output_dense_before_residual_and_layer_norm()
    {
        torch.manual_seed(6);
        var config = ModelPresets.Get("tiny-instructblip-t5");
        using var model = new BlipForConditionalGeneration(config);
        model.eval();
        var inputs = TinyInputs.Batch(config.DecoderOnly);
        // A site that zeroes the attention output dense's result leaves LayerNorm(0 + residual): the attention
        // sublayer then only normalises its input. Compared against the same layer with the sublayer's output dense zeroed.
        var site = Site(model, "qformer.encoder.layer.0.adapter_after_attention");
        site.Attach("zero", new Probe(x => torch.zeros_like(x)));
        Tensor withSite;
        using (torch.no_grad()) withSite = model.call(inputs).Intermediates["qformer_query_output"].clone();
        site.Detach("zero");
        var dense = (VlPeft.Nn.Linear)model.named_modules().Single(m => m.name == "qformer.encoder.layer.0.attention.output.dense").module;
        using (torch.no_grad())
        {
            dense.weight.zero_();
            dense.bias!.zero_();
            var zeroedDense = model.call(inputs).Intermediates["qformer_query_output"];
            TensorAssert.Close(zeroedDense, withSite, 1e-6);
        }
    }
}
