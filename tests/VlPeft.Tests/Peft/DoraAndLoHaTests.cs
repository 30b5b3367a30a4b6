using TorchSharp;
using VlPeft.Peft.LoHa;
using VlPeft.Peft.Lora;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Tests.Peft;

public class DoraAndLoHaTests
{
    [Fact]
    public void Dora_forward_and_merge_follow_the_formula()
    {
        torch.manual_seed(3);
        using var layer = new Linear(6, 4);
        var dora = new DoraAdapter("default", layer, rank: 2, alpha: 4, dropout: 0, useRslora: false);
        layer.Attach(dora);
        // At init m = ‖W0‖ per row.
        TensorAssert.Close(layer.weight.square().sum(1).sqrt(), dora.Magnitude.weight);
        using (torch.no_grad())
        {
            dora.B.weight.normal_(0, 0.5);
            dora.Magnitude.weight.mul_(torch.rand(4) + 0.5);
        }
        using var x = torch.randn(3, 6);
        // y = b0 + (m/n)⊙((W0 + s·B·A)·x), n = ‖W0 + s·B·A‖ per row, s = 2.
        var w = layer.weight + 2.0 * dora.B.weight.matmul(dora.A.weight);
        var n = w.square().sum(1).sqrt();
        var expected = (dora.Magnitude.weight / n) * x.matmul(w.t()) + layer.bias!;
        TensorAssert.Close(expected, layer.call(x));
        using var original = layer.weight.detach().clone();
        layer.Merge();
        TensorAssert.Close(expected, layer.call(x));
        layer.Unmerge();
        TensorAssert.Close(original, layer.weight, 1e-5);
    }

    [Fact]
    public void Loha_forward_and_merge_follow_the_formula()
    {
        torch.manual_seed(4);
        using var layer = new Linear(5, 3);
        var loha = new LoHaAdapter("default", layer, rank: 2, alpha: 6);
        layer.Attach(loha);
        var p = layer.named_parameters().Where(t => t.name.StartsWith("hada_")).ToDictionary(t => t.name, t => t.parameter);
        Assert.Equal(new[] { "hada_w1_a.default", "hada_w1_b.default", "hada_w2_a.default", "hada_w2_b.default" }, p.Keys.OrderBy(k => k));
        Assert.Equal(0, p["hada_w2_b.default"].abs().sum().item<float>()); // ΔW = 0 at init
        using (torch.no_grad()) p["hada_w2_b.default"].normal_();
        using var x = torch.randn(4, 5);
        var delta = p["hada_w1_a.default"].matmul(p["hada_w1_b.default"]) * p["hada_w2_a.default"].matmul(p["hada_w2_b.default"]) * 3.0;
        var expected = x.matmul((layer.weight + delta).t()) + layer.bias!;
        TensorAssert.Close(expected, layer.call(x));
        layer.Merge();
        TensorAssert.Close(expected, layer.call(x));
    }
}
