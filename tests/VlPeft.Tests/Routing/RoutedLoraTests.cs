using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Multimodal;
using VlPeft.Peft;
using VlPeft.Peft.Routing;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Tests.Routing;

public class RoutedLoraTests
{
    /// <summary>A layer with a routed LoRA whose A and B are random (B starts at zero), bound to a context holding x_v.</summary>
    static (Linear Layer, Tensor A, Tensor B, ForwardContext Context) Routed(long input, long output, RoutedLoraConfig config, bool fanInFanOut = false)
    {
        var layer = new Linear(input, output, fanInFanOut: fanInFanOut);
        var adapter = new RoutedLoraAdapter("default", layer, config);
        layer.Attach(adapter);
        var context = new ForwardContext();
        adapter.Bind(context);
        var parameters = layer.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (torch.no_grad())
            foreach (var p in parameters.Values) p.copy_(torch.randn_like(p));
        return (layer, parameters["lora_A.default.weight"].detach(), parameters["lora_B.default.weight"].detach(), context);
    }

    [Fact]
    public void Add_routing_is_plain_lora_plus_a_visual_bias()
    {
        torch.manual_seed(3);
        var (layer, a, b, context) = Routed(6, 5, new RoutedLoraConfig { R = 2, LoraAlpha = 4, Routing = "add" });
        using var x = torch.randn(2, 3, 6);
        using var xv = torch.randn(2, 1, 6);
        context.Publish(ForwardContext.VisualFeatures, xv);
        const double s = 4.0 / 2;
        var lora = layer.Base(x) + s * x.matmul(a.t()).matmul(b.t());
        var visualBias = s * xv.matmul(a.t()).matmul(b.t());             // [2, 1, 5], the same for every position
        TensorAssert.Close(lora + visualBias, layer.call(x), 1e-4);
    }

    [Fact]
    public void Routed_layer_reads_the_visual_feature_of_each_example()
    {
        torch.manual_seed(4);
        var (layer, a, b, context) = Routed(6, 5, new RoutedLoraConfig { R = 3, LoraAlpha = 3, Routing = "xt_xvT_xv" });
        using var x = torch.randn(2, 4, 6);
        using var xv = torch.randn(2, 2, 6);
        context.Publish(ForwardContext.VisualFeatures, xv);
        var at = x.matmul(a.t());
        var av = xv.matmul(a.t());
        var expected = layer.Base(x) + at.matmul(av.transpose(1, 2)).matmul(av).matmul(b.t());
        TensorAssert.Close(expected, layer.call(x), 1e-3);
        context.Clear();
        Assert.Throws<InvalidOperationException>(() => layer.call(x));
    }

    [Theory]
    [InlineData("none")]
    [InlineData("xt_xvT_xv")]
    public void Gpt2_c_attn_adapts_the_q_and_v_slices_of_the_fused_conv1d(string routing)
    {
        torch.manual_seed(5);
        const int d = 4, r = 2;
        var config = new RoutedLoraConfig { R = r, LoraAlpha = 4, Routing = routing, EnableLora = new[] { true, false, true }, FanInFanOut = true };
        var (layer, a, b, context) = Routed(d, 3 * d, config, fanInFanOut: true);
        Assert.Equal(new long[] { d, 3 * d }, layer.weight.shape);            // Conv1D keeps [in, out]
        Assert.Equal(new long[] { 2 * r, d }, a.shape);                        // a 2r bottleneck: q | v
        Assert.Equal(new long[] { 2 * d, r }, b.shape);
        using var x = torch.randn(2, 3, d);
        using var xv = torch.randn(2, 1, d);
        context.Publish(ForwardContext.VisualFeatures, xv);

        // Unfused: three separate projections x·W[:, part] + b[part]; z over the whole 2r, then B_q on its first r, B_v on its last r.
        var w = layer.weight.detach();
        var bias = layer.bias!.detach();
        Tensor Project(int part) => x.matmul(w[.., (part * d)..((part + 1) * d)]) + bias[(part * d)..((part + 1) * d)];
        var at = x.matmul(a.t());
        var av = xv.matmul(a.t());
        var z = routing == "none" ? at : at.matmul(av.transpose(1, 2)).matmul(av);
        const double s = 4.0 / r;
        var q = Project(0) + s * z[.., .., ..r].matmul(b[..d].t());
        var k = Project(1);
        var v = Project(2) + s * z[.., .., r..].matmul(b[d..].t());
        TensorAssert.Close(torch.cat(new[] { q, k, v }, -1), layer.call(x), 1e-3);

        if (routing == "none")
        {
            // The unrouted grouped update has a fixed ΔW: merging keeps the output.
            var before = layer.call(x).detach();
            layer.Merge();
            TensorAssert.Close(before, layer.call(x), 1e-4);
        }
    }

    [Fact]
    public void Cross_attention_with_one_visual_token_is_a_text_independent_visual_term()
    {
        torch.manual_seed(6);
        var (layer, a, b, context) = Routed(8, 6, new RoutedLoraConfig { R = 4, LoraAlpha = 4, Routing = "cross_attention", CrossAttentionHeads = 2 });
        var p = layer.named_parameters().ToDictionary(t => t.name, t => (Tensor)t.parameter.detach());
        using var x = torch.randn(2, 3, 8);
        using var xv = torch.randn(2, 1, 8);
        context.Publish(ForwardContext.VisualFeatures, xv);
        // One key: softmax = 1, so attention returns o(v(a_v)) at every text position.
        Tensor Lin(Tensor t, string name) => t.matmul(p[$"lora_cross_attn.default.{name}.weight"].t()) + p[$"lora_cross_attn.default.{name}.bias"];
        var av = xv.matmul(a.t());
        var expected = layer.Base(x) + Lin(Lin(av, "v"), "o").matmul(b.t()).expand(2, 3, 6);
        TensorAssert.Close(expected, layer.call(x), 1e-3);
    }

    [Fact]
    public void Merge_refuses_routed_lora_and_folds_plain_lora_exactly()
    {
        torch.manual_seed(7);
        var config = VitRobertaVqaConfig.Parse(ModelPresets.Json("tiny-vit-roberta-vqa"), "preset");
        using var model = new VitRobertaForVqa(config);
        var routed = PeftModel.Create(model, RoutingPeftPresets.Roberta("roberta-routed-lora", 4).Peft!);
        var error = Assert.Throws<BadInputException>(() => routed.Merge());
        Assert.Contains("cannot be merged", error.Message);
        Assert.Contains("visual feature", error.Message);

        using var gpt = new VitGpt2ForCaptioning(VitGpt2CaptioningConfig.Parse(ModelPresets.Json("tiny-vit-gpt2-captioning"), "preset"));
        var plain = PeftModel.Create(gpt, RoutingPeftPresets.Gpt2("gpt2-lora", 4, 2).Peft!);
        using (torch.no_grad())
            foreach (var (name, p) in gpt.named_parameters().Where(n => n.name.Contains("lora_B"))) p.normal_();
        gpt.eval();
        var inputs = new VisionLanguageInputs(torch.randn(2, 3, config.Vision.ImageSize, config.Vision.ImageSize), torch.tensor(new long[] { 5, 6, 7, 8 }).view(2, 2), torch.ones(2, 2, dtype: ScalarType.Int64));
        using var before = gpt.call(inputs).Logits.detach();
        plain.Merge();
        TensorAssert.Close(before, gpt.call(inputs).Logits, 1e-3);
    }

    [Fact]
    public void Routed_adapter_routes_before_the_activation()
    {
        torch.manual_seed(8);
        var adapter = new RoutedAdapter(6, new RoutedAdapterConfig { AdapterDim = 3, Routing = "mul", Activation = "relu", Residual = true });
        var context = new ForwardContext();
        adapter.Bind(context);
        var p = adapter.named_parameters().ToDictionary(t => t.name, t => t.parameter);
        using (torch.no_grad()) foreach (var t in p.Values) t.copy_(torch.randn_like(t));
        using var h = torch.randn(2, 4, 6);
        using var xv = torch.randn(2, 1, 6);
        context.Publish(ForwardContext.VisualFeatures, xv);
        Tensor Lin(Tensor t, string name) => t.matmul(p[name + ".weight"].t()) + p[name + ".bias"];
        var expected = h + Lin(torch.nn.functional.relu(Lin(h, "down_proj") * Lin(xv, "down_proj")), "up_proj");
        TensorAssert.Close(expected, adapter.call(h), 1e-4);
    }
}
