using TorchSharp;
using VlPeft.Models;
using VlPeft.Nn;
using VlPeft.Peft;
using VlPeft.Peft.Bottleneck;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Lavin;

public class BottleneckAdapterTests
{
    static Dictionary<string, Tensor> Params(nn.Module m) => m.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter.detach());

    static void Randomize(nn.Module m)
    {
        using var _ = torch.no_grad();
        foreach (var (_, p) in m.named_parameters()) p.copy_(torch.randn_like(p) * 0.5);
    }

    /// <summary>The block-diagonal matrix of a grouped weight [out, in/k], built element by element.</summary>
    static Tensor BlockDiagonal(Tensor w, int groups)
    {
        long outPer = w.shape[0] / groups, inPer = w.shape[1];
        var dense = torch.zeros(w.shape[0], inPer * groups, dtype: w.dtype);
        for (int g = 0; g < groups; g++)
            for (long o = 0; o < outPer; o++)
                for (long i = 0; i < inPer; i++)
                    dense[g * outPer + o, g * inPer + i] = w[g * outPer + o, i];
        return dense;
    }

    [Fact]
    public void Grouped_up_projection_is_a_block_diagonal_matrix()
    {
        torch.manual_seed(1);
        var layer = new GroupedLinear(6, 8, groups: 2);
        Randomize(layer);
        var x = torch.randn(3, 5, 6);
        var expected = x.matmul(BlockDiagonal(layer.weight.detach(), 2).t()) + layer.bias.detach();
        TensorAssert.Close(expected, layer.call(x), 1e-6);
        // Group 0's inputs do not reach group 1's outputs.
        var onlyFirstGroup = torch.cat(new[] { torch.randn(1, 3), torch.zeros(1, 3) }, 1);
        TensorAssert.Close(layer.bias.detach()[4..], layer.call(onlyFirstGroup)[0, 4..], 1e-6);
    }

    [Fact]
    public void Adapter_forward_is_x_plus_scale_times_up_of_down()
    {
        torch.manual_seed(2);
        var config = new BottleneckConfig { AdapterDim = 4, Groups = 2, Scale = 0.7, Dropout = 0.1 };
        var adapter = new BottleneckAdapter(8, config, lavinQuirk: false);
        Randomize(adapter);
        adapter.eval();                                                          // dropout off
        var p = Params(adapter);
        var x = torch.randn(2, 3, 8);
        var down = x.matmul(p["conv_A.weight"].t()) + p["conv_A.bias"];
        var expected = x + 0.7 * (down.matmul(BlockDiagonal(p["conv_B.weight"], 2).t()) + p["conv_B.bias"]);
        TensorAssert.Close(expected, adapter.call(x), 1e-5);
    }

    [Fact]
    public void A_fresh_adapter_is_the_identity_and_has_the_papers_initialisation()
    {
        torch.manual_seed(3);
        var adapter = new BottleneckAdapter(64, new BottleneckConfig { AdapterDim = 16, Groups = 2, Router = true }, lavinQuirk: false);
        var p = Params(adapter);
        Assert.Equal(0, p["conv_B.weight"].abs().sum().item<float>());
        Assert.Equal(0, p["conv_D.bias"].abs().sum().item<float>());
        Assert.Equal(0, p["conv_A.bias"].abs().sum().item<float>());
        double bound = Math.Sqrt(6.0 / (64 + 16));                              // xavier-uniform of the [16, 64, 1] conv
        Assert.True(p["conv_A.weight"].abs().max().item<float>() <= bound);
        Assert.True(p["conv_A.weight"].abs().max().item<float>() > 0.8 * bound);
        var x = torch.randn(2, 5, 64);
        adapter.train();
        TensorAssert.Close(x, adapter.call(x), 0);
    }

    [Fact]
    public void Router_weights_are_a_softmax_of_the_first_token_over_the_temperature()
    {
        var config = new BottleneckConfig { AdapterDim = 2, Groups = 2, Scale = 1, Dropout = 0, Router = true, Temperature = 2 };
        var adapter = new BottleneckAdapter(4, config, lavinQuirk: false);
        using (torch.no_grad())
        {
            var p = adapter.named_parameters().ToDictionary(t => t.name, t => t.parameter);
            p["expert_weights.weight"].copy_(torch.tensor(new float[] { 1, 0, 0, 0, 0, 1, 0, 0 }).view(2, 4));
            p["expert_weights.bias"].zero_();
            p["conv_A.weight"].copy_(torch.tensor(new float[] { 1, 0, 0, 0, 0, 0, 1, 0 }).view(2, 4));   // down = (x0, x2)
            p["conv_A.bias"].zero_();
            p["conv_B.weight"].copy_(torch.tensor(new float[] { 1, 1, 0, 0 }).view(4, 1));              // up_0: (d0, d0, 0, 0)
            p["conv_B.bias"].zero_();
            p["conv_D.weight"].copy_(torch.tensor(new float[] { 0, 0, 2, 2 }).view(4, 1));              // up_1: (0, 0, 2·d1, 2·d1)
            p["conv_D.bias"].zero_();
        }
        adapter.eval();
        // Sequence [first token (2, 0, 1, 0), second token (1, 1, 1, 1)]: logits (2, 0)/2 → w = (e/(e+1), 1/(e+1)).
        var x = torch.tensor(new float[] { 2, 0, 1, 0, 1, 1, 1, 1 }).view(1, 2, 4);
        double w0 = Math.E / (Math.E + 1), w1 = 1 / (Math.E + 1);
        TensorAssert.Close(torch.tensor(new[] { (float)w0, (float)w1 }).view(1, 1, 2), adapter.RouterWeights(x), 1e-6);
        // Second token: down = (1, 1); up_0 = (1, 1, 0, 0), up_1 = (0, 0, 2, 2).
        var second = new[] { 1 + w0, 1 + w0, 1 + 2 * w1, 1 + 2 * w1 }.Select(v => (float)v).ToArray();
        TensorAssert.Close(torch.tensor(second), adapter.call(x)[0, 1], 1e-6);
    }

    [Fact]
    public void Lavin_quirk_routes_every_image_by_image_zeros_token_at_each_position()
    {
        torch.manual_seed(4);
        var config = new BottleneckConfig { AdapterDim = 4, Groups = 2, Router = true, Temperature = 10, LavinRouterQuirkModules = new[] { "vision_model" } };
        var quirk = new BottleneckAdapter(8, config, lavinQuirk: true);
        var x = torch.randn(3, 5, 8);
        var w = quirk.RouterWeights(x);
        Assert.Equal(new long[] { 1, 5, 2 }, w.shape);
        var p = Params(quirk);
        var expected = ((x[0].matmul(p["expert_weights.weight"].t()) + p["expert_weights.bias"]) / 10).softmax(-1);
        TensorAssert.Close(expected, w[0], 1e-6);
    }

    [Fact]
    public void Config_round_trips_through_adapter_config_json_and_rejects_bad_values()
    {
        var config = new BottleneckConfig
        {
            AdapterDim = 8, Groups = 4, Scale = 0.5, Dropout = 0.2, Router = true, Temperature = 5,
            LavinRouterQuirkModules = new[] { "vision_model" }, TargetModules = ModuleSelector.FromRegex(".*adapter_before_attention"),
        };
        var back = (BottleneckConfig)PeftConfig.Parse(config.ToJsonText(), "adapter_config.json");
        Assert.Equal(config.ToJsonText(), back.ToJsonText());
        Assert.Equal("BOTTLENECK", back.PeftType);
        Assert.Throws<BadInputException>(() => (config with { Groups = 3 }).Validate());
        Assert.Throws<BadInputException>(() => (config with { Dropout = 1 }).Validate());
        Assert.Throws<BadInputException>(() => (config with { Temperature = 0 }).Validate());
        Assert.Throws<BadInputException>(() => (config with { Router = false }).Validate());   // the quirk needs a router
    }
}
