using TorchSharp;
using VlPeft.Models;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Peft.Routing;

/// <summary>
/// Routed LoRA on one linear layer (peft-methods.md §9.3): a_t = A·drop(x_t), a_v = A·drop(x_v) with the same A,
/// z = route(a_t, a_v), Δy = s·B·z. There is no separate B·a_t term: z replaces the bottleneck (only "add" keeps
/// plain LoRA as a sub-term). With enable_lora, group g of r bottleneck channels feeds B_g, whose outputs fill
/// the g-th enabled part of the output and the disabled parts stay zero (GPT-2's c_attn: q | k | v, k untouched).
/// A kaiming-uniform, B zero, as LoRA.
/// </summary>
public sealed class RoutedLoraAdapter : LinearAdapter, IForwardContextConsumer
{
    public const string AKind = "lora_A", BKind = "lora_B", CrossKind = "lora_cross_attn";

    readonly RoutedLoraConfig config;
    readonly bool[] parts;
    readonly AdapterWeight a, b;
    readonly BottleneckCrossAttention? cross;
    ForwardContext? context;

    public RoutedLoraAdapter(string name, Linear layer, RoutedLoraConfig config) : base(name, layer)
    {
        this.config = config;
        parts = (config.EnableLora ?? new[] { true }).ToArray();
        Function = config.Function;
        Scaling = config.LoraAlpha / config.R;
        int enabled = parts.Count(p => p);
        var dtype = AdapterDtype(layer);
        var device = layer.weight.device;
        using (torch.no_grad())
        {
            double bound = 1 / Math.Sqrt(layer.InFeatures);
            a = new AdapterWeight(torch.empty(config.R * enabled, layer.InFeatures, dtype: dtype, device: device).uniform_(-bound, bound));
            b = new AdapterWeight(torch.zeros(PartWidth * enabled, config.R, dtype: dtype, device: device));
        }
        layer.Container(AKind).AddModule(name, a);
        layer.Container(BKind).AddModule(name, b);
        if (Function == RoutingFunction.CrossAttention)
        {
            cross = new BottleneckCrossAttention(config.R * enabled, config.CrossAttentionHeads, dtype, device);
            layer.Container(CrossKind).AddModule(name, cross);
        }
    }

    public RoutingFunction Function { get; }
    public double Scaling { get; }
    long PartWidth => Layer.OutFeatures / parts.Length;

    public override IReadOnlyList<string> ContainerKinds => cross is null ? new[] { AKind, BKind } : new[] { AKind, BKind, CrossKind };

    public IReadOnlyList<string> ContextNeeds => Function == RoutingFunction.None ? Array.Empty<string>() : new[] { ForwardContext.VisualFeatures };
    public void Bind(ForwardContext context) => this.context = context;

    Tensor Dropped(Tensor x) => config.LoraDropout > 0 && Layer.training ? F.dropout(x, config.LoraDropout, training: true) : x;

    public override Tensor Forward(Tensor x, Tensor baseOutput)
    {
        using var scope = torch.NewDisposeScope();
        var at = F.linear(Dropped(x.to(a.weight.dtype)), a.weight);                 // [B, L, k]
        var z = Function == RoutingFunction.None ? at : Routed(at);
        return (Up(z) * Scaling).to(baseOutput.dtype).MoveToOuterDisposeScope();
    }

    Tensor Routed(Tensor at)
    {
        if (at.dim() != 3) throw new BadInputException($"routed LoRA on '{Name}' needs [batch, length, features] inputs, got [{string.Join(", ", at.shape)}]");
        var visual = (context ?? throw new InvalidOperationException("the routed LoRA adapter is not bound to a model's forward context"))
            .Get(ForwardContext.VisualFeatures);
        var av = F.linear(Dropped(visual.to(a.weight.dtype)), a.weight);             // [B, N_v, k]
        return cross is not null ? cross.Attend(at, av) : RoutingFunctions.Route(Function, at, av);
    }

    /// <summary>B applied group-wise, the result placed in the enabled parts of the output, zeros elsewhere.</summary>
    Tensor Up(Tensor z)
    {
        if (parts.Length == 1) return F.linear(z, b.weight);
        var groups = z.chunk(parts.Count(p => p), -1);
        var weights = b.weight.chunk(groups.Length, 0);
        var pieces = new List<Tensor>();
        int g = 0;
        foreach (bool enabled in parts)
            pieces.Add(enabled ? F.linear(groups[g], weights[g++])
                : torch.zeros(z.shape[..^1].Append(PartWidth).ToArray(), dtype: z.dtype, device: z.device));
        return torch.cat(pieces.ToArray(), -1);
    }

    /// <summary>The unrouted ΔW = s·pad(B_g·A_g) [out, in] (only merged when routing is "none").</summary>
    public override Tensor DeltaWeight()
    {
        if (Function != RoutingFunction.None) throw new InvalidOperationException("a routed LoRA has no fixed ΔW");
        using var scope = torch.NewDisposeScope();
        var eye = torch.eye(Layer.InFeatures, dtype: ScalarType.Float32, device: a.weight.device);
        // Rows of Up(A·I) are ΔW's columns: the same grouped path the forward takes.
        var delta = Up(F.linear(eye, a.weight.to(ScalarType.Float32)).unsqueeze(0).to(b.weight.dtype)).squeeze(0).to(ScalarType.Float32).t() * Scaling;
        return delta.MoveToOuterDisposeScope();
    }
}
