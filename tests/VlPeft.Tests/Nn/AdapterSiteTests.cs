using TorchSharp;
using VlPeft.Nn;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Nn;

public class AdapterSiteTests
{
    /// <summary>A residual bottleneck h + up(down(h)), the shape of the papers' adapters.</summary>
    sealed class Bottleneck : nn.Module<Tensor, Tensor>
    {
        readonly VlPeft.Nn.Linear down, up;

        public Bottleneck(int dim, int hidden) : base("Bottleneck")
        {
            down = new VlPeft.Nn.Linear(dim, hidden);
            up = new VlPeft.Nn.Linear(hidden, dim);
            RegisterComponents();
        }

        public override Tensor forward(Tensor h) => h + up.call(down.call(h));
    }

    sealed class Block : nn.Module<Tensor, Tensor>
    {
        public readonly AdapterSite adapter_before_attention = new(AdapterPlacement.BeforeAttention, 4);
        readonly VlPeft.Nn.Linear attn = new(4, 4);

        public Block() : base("Block") => RegisterComponents();

        public override Tensor forward(Tensor h) => attn.call(adapter_before_attention.call(h));
    }

    [Fact]
    public void Empty_site_is_the_identity_and_attached_adapters_apply_in_order()
    {
        torch.manual_seed(30);
        using var block = new Block();
        using var x = torch.randn(2, 4);
        var site = block.adapter_before_attention;
        TensorAssert.Close(x, site.call(x), 0);

        var first = new Bottleneck(4, 2);
        var second = new Bottleneck(4, 3);
        site.Attach("a", first);
        site.Attach("b", second);
        TensorAssert.Close(second.call(first.call(x)), site.call(x));
        Assert.Contains("adapter_before_attention.a.down.weight", block.named_parameters().Select(p => p.name));

        site.SetActive(new[] { "b" });
        TensorAssert.Close(second.call(x), site.call(x));
        site.Disabled = true;
        TensorAssert.Close(x, site.call(x), 0);
        site.Disabled = false;
        site.SetActive(null);
        site.Detach("a");
        TensorAssert.Close(second.call(x), site.call(x));
        Assert.DoesNotContain(block.named_parameters(), p => p.name.Contains(".a."));
    }
}
