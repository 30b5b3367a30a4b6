using TorchSharp;
using VlPeft.Models;
using VlPeft.Nn;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Peft.Routing;

/// <summary>One routed adapter at a site: <c>down_proj</c> (d → adapter_dim, with bias) shared by text and visual input, the routing, the activation, <c>up_proj</c>.</summary>
public sealed class RoutedAdapter : nn.Module<Tensor, Tensor>, IForwardContextConsumer
{
    readonly Linear down_proj, up_proj;
    readonly RoutingFunction function;
    readonly Func<Tensor, Tensor> activation;
    readonly bool residual;
    ForwardContext? context;

    public RoutedAdapter(long width, RoutedAdapterConfig config) : base("RoutedAdapter")
    {
        down_proj = new Linear(width, config.AdapterDim);
        up_proj = new Linear(config.AdapterDim, width);
        function = config.Function;
        activation = Activations.Get(config.Activation);
        residual = config.Residual;
        RegisterComponents();
    }

    public IReadOnlyList<string> ContextNeeds => function == RoutingFunction.None ? Array.Empty<string>() : new[] { ForwardContext.VisualFeatures };
    public void Bind(ForwardContext context) => this.context = context;

    public override Tensor forward(Tensor h)
    {
        using var scope = torch.NewDisposeScope();
        var x = h.to(down_proj.weight.dtype);                                     // adapters stay fp32 under a bf16 tower
        var down = down_proj.call(x);
        if (function != RoutingFunction.None)
        {
            var visual = (context ?? throw new InvalidOperationException("the routed adapter is not bound to a model's forward context")).Get(ForwardContext.VisualFeatures);
            down = RoutingFunctions.Route(function, down, down_proj.call(visual.to(x.dtype)));
        }
        var output = up_proj.call(activation(down));
        return (residual ? output + x : output).to(h.dtype).MoveToOuterDisposeScope();
    }
}
