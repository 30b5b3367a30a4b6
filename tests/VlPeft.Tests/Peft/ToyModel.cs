using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Tests.Peft;

/// <summary>
/// A small model of named linear layers laid out like a BERT/Q-Former encoder, so paths read
/// <c>encoder.layer.0.attention.attention.query</c>, <c>encoder.layer.0.crossattention.attention.value</c>,
/// <c>encoder.layer.1.output.dense</c>, plus a fused <c>vision.qkv</c> and an <c>lm_head</c>.
/// </summary>
public sealed class ToyModel : nn.Module<Tensor, Tensor>
{
    public const int Hidden = 8;
    readonly ToyEncoder encoder;
    readonly ToyVision vision;
    readonly Linear lm_head;

    readonly int layers;

    public ToyModel(int layers = 2) : base("ToyModel")
    {
        this.layers = layers;
        encoder = new ToyEncoder(layers);
        vision = new ToyVision();
        lm_head = new Linear(Hidden, 10, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => lm_head.call(encoder.call(x) + vision.call(x));

    /// <summary>
    /// A second model with this one's base weights (tests run in parallel and share torch's global
    /// RNG, so re-seeding cannot reproduce a model).
    /// </summary>
    public ToyModel CloneBase()
    {
        var copy = new ToyModel(layers);
        var mine = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var _ = torch.no_grad();
        foreach (var (name, p) in copy.named_parameters()) p.copy_(mine[name]);
        return copy;
    }
}

sealed class ToyEncoder : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<ToyLayer> layer;

    public ToyEncoder(int layers) : base("ToyEncoder")
    {
        layer = new ModuleList<ToyLayer>(Enumerable.Range(0, layers).Select(i => new ToyLayer(hasCross: i % 2 == 0)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        foreach (var l in layer) x = l.call(x);
        return x;
    }
}

sealed class ToyLayer : nn.Module<Tensor, Tensor>
{
    readonly ToyAttention attention;
    readonly ToyAttention? crossattention;
    readonly ToyDense intermediate;
    readonly ToyDense output;

    public ToyLayer(bool hasCross) : base("ToyLayer")
    {
        attention = new ToyAttention();
        crossattention = hasCross ? new ToyAttention() : null;
        intermediate = new ToyDense(ToyModel.Hidden, 16);
        output = new ToyDense(16, ToyModel.Hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = x + attention.call(x);
        if (crossattention != null) x = x + crossattention.call(x);
        return x + output.call(torch.nn.functional.gelu(intermediate.call(x)));
    }
}

sealed class ToyAttention : nn.Module<Tensor, Tensor>
{
    readonly ToySelf attention;
    readonly ToyDense output;

    public ToyAttention() : base("ToyAttention")
    {
        attention = new ToySelf();
        output = new ToyDense(ToyModel.Hidden, ToyModel.Hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => output.call(attention.call(x));
}

sealed class ToySelf : nn.Module<Tensor, Tensor>
{
    readonly Linear query, key, value;

    public ToySelf() : base("ToySelf")
    {
        query = new Linear(ToyModel.Hidden, ToyModel.Hidden);
        key = new Linear(ToyModel.Hidden, ToyModel.Hidden);
        value = new Linear(ToyModel.Hidden, ToyModel.Hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => torch.tanh(query.call(x)) * key.call(x) + value.call(x);
}

sealed class ToyDense : nn.Module<Tensor, Tensor>
{
    readonly Linear dense;

    public ToyDense(int inFeatures, int outFeatures) : base("ToyDense")
    {
        dense = new Linear(inFeatures, outFeatures);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => dense.call(x);
}

sealed class ToyVision : nn.Module<Tensor, Tensor>
{
    readonly Linear qkv;

    public ToyVision() : base("ToyVision")
    {
        qkv = new Linear(ToyModel.Hidden, 3 * ToyModel.Hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => qkv.call(x).chunk(3, -1)[0];
}
