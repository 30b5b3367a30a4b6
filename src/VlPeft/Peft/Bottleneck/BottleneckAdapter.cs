using TorchSharp;
using VlPeft.Models;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Peft.Bottleneck;

/// <summary>
/// One Bottleneck Adapter / RepAdapter at a site, with LaVIN's module names so its released weights map
/// one to one: <c>conv_A</c> the dense down-projection (xavier-uniform, zero bias), <c>conv_B</c> (and with a
/// router <c>conv_D</c>) the zero-initialised group-wise up-projections, <c>expert_weights</c> the router.
/// No nonlinearity: without a router the adapter is a fixed affine map that folds into the next linear layers.
/// </summary>
public sealed class BottleneckAdapter : nn.Module<Tensor, Tensor>, IForwardContextConsumer
{
    readonly Linear conv_A;
    readonly GroupedLinear conv_B;
    readonly GroupedLinear? conv_D;
    readonly Linear? expert_weights;
    readonly double scale, dropout, temperature;
    readonly bool quirk;
    ForwardContext? context;
    Tensor? heldWeights;

    public BottleneckAdapter(long width, BottleneckConfig config, bool lavinQuirk) : base("BottleneckAdapter")
    {
        conv_A = new Linear(width, config.AdapterDim);
        using (torch.no_grad())
        {
            double bound = Math.Sqrt(6.0 / (width + config.AdapterDim));   // xavier-uniform of the [h, d, 1] conv weight
            conv_A.weight.uniform_(-bound, bound);
            conv_A.bias!.zero_();
        }
        conv_B = new GroupedLinear(config.AdapterDim, width, config.Groups);
        if (config.Router)
        {
            conv_D = new GroupedLinear(config.AdapterDim, width, config.Groups);
            expert_weights = new Linear(width, 2);
        }
        scale = config.Scale;
        dropout = config.Dropout;
        temperature = config.Temperature;
        quirk = lavinQuirk;
        RegisterComponents();
    }

    public bool HasRouter => expert_weights is not null;

    /// <summary>Routers read the decoding phase (to keep the prompt's weights while generating); plain adapters need nothing.</summary>
    public IReadOnlyList<string> ContextNeeds => Array.Empty<string>();
    public void Bind(ForwardContext context) => this.context = context;

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.to(conv_A.weight.dtype);                                  // adapters stay fp32 under a bf16 tower
        var down = F.dropout(conv_A.call(h), dropout, training);
        var delta = expert_weights is null ? conv_B.call(down) : Routed(h, down);
        return (x + (scale * delta).to(x.dtype)).MoveToOuterDisposeScope();
    }

    Tensor Routed(Tensor h, Tensor down)
    {
        var w = RouterWeights(h);                                            // [B, 1, 2] or [1, L, 2]
        return w[.., .., 0..1] * conv_B.call(down) + w[.., .., 1..2] * conv_D!.call(down);
    }

    /// <summary>
    /// softmax((W_r·x_0 + b_r)/t). While a cached generation continues, the weights computed on the prompt are
    /// reused (the new tokens' first token is not the sequence's), as LaVIN caches them at start_pos 0.
    /// </summary>
    public Tensor RouterWeights(Tensor h)
    {
        var phase = context?.Phase ?? DecodingPhase.None;
        if (phase == DecodingPhase.Continue && heldWeights is not null) return heldWeights.alias();
        var first = quirk ? h[0].unsqueeze(0) : h[.., 0..1];               // quirk: image 0's token at every position
        var w = F.softmax(expert_weights!.call(first) / temperature, -1);
        if (phase == DecodingPhase.Prompt)
        {
            heldWeights?.Dispose();
            heldWeights = w.detach().clone().DetachFromDisposeScope();
        }
        return w;
    }

    /// <summary>The adapter as x ↦ x + M·x + c (router-free, dropout off): M = s·U·D and c = s·(U·a + b_u).</summary>
    public (Tensor Matrix, Tensor Shift) AffineMap()
    {
        if (HasRouter) throw new InvalidOperationException("a routed adapter is not a fixed affine map");
        using var scope = torch.NewDisposeScope();
        var up = conv_B.DenseWeight();                                       // [d, h]
        var matrix = scale * up.matmul(conv_A.weight);                       // [d, d]
        var shift = scale * (up.matmul(conv_A.bias!) + conv_B.bias);         // [d]
        return (matrix.MoveToOuterDisposeScope(), shift.MoveToOuterDisposeScope());
    }
}
