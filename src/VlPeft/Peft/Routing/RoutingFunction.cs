using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Peft.Routing;

/// <summary>
/// The routing paper's parameter-free functions inside a bottleneck (peft-methods.md §9.2): they mix the
/// down-projected text states a_t [B, L, k] with the down-projected visual feature a_v [B, N_v, k], using
/// the same down-projection for both.
/// </summary>
public enum RoutingFunction
{
    /// <summary>No routing: the plain bottleneck (plain LoRA or a plain adapter).</summary>
    None,
    /// <summary>z = a_t + a_v (equals LoRA plus a visual bias B·a_v).</summary>
    Add,
    /// <summary>z = a_t ⊙ a_v.</summary>
    Mul,
    /// <summary>z_j = (Σ_i a_t,i)·a_v,j (a_t times k copies of the row a_v).</summary>
    MulExpand,
    /// <summary>z = (a_t·a_vᵀ)·a_v, the paper's x_t x_vᵀ x_v (the reference code's default, "vllora").</summary>
    XtXvTXv,
    /// <summary>z = (relu(a_t)·relu(a_v)ᵀ)·a_v.</summary>
    XtXvTXvRelu,
    /// <summary>z = (a_t·a_tᵀ)·a_v: mixes text positions (the paper calls it experimental).</summary>
    XtXtTXv,
    /// <summary>The baseline with parameters: 4-head attention from a_t over the visual tokens a_v inside the bottleneck.</summary>
    CrossAttention,
}

public static class RoutingFunctions
{
    static readonly (string Name, RoutingFunction Function)[] names =
    {
        ("none", RoutingFunction.None), ("add", RoutingFunction.Add), ("mul", RoutingFunction.Mul), ("mul_expand", RoutingFunction.MulExpand),
        ("xt_xvT_xv", RoutingFunction.XtXvTXv), ("xt_xvT_xv_relu", RoutingFunction.XtXvTXvRelu), ("xt_xtT_xv", RoutingFunction.XtXtTXv),
        ("cross_attention", RoutingFunction.CrossAttention),
    };

    /// <summary>The names used in adapter_config.json and experiment files.</summary>
    public static IReadOnlyList<string> Names => names.Select(n => n.Name).ToList();

    public static string Name(RoutingFunction function) => names.First(n => n.Function == function).Name;

    /// <summary>Reads a name; "vllora" (the reference code's name for x_t x_vᵀ x_v) is accepted too.</summary>
    public static RoutingFunction Parse(string name) =>
        name == "vllora" ? RoutingFunction.XtXvTXv
        : names.FirstOrDefault(n => n.Name == name) is { Name: not null } hit ? hit.Function
        : throw new BadInputException($"routing '{name}' is not known (known: {string.Join(", ", Names)})");

    /// <summary>
    /// Functions defined for one visual token only: they broadcast a_v over the text positions (and x_t x_tᵀ x_v
    /// multiplies an L×L matrix by it). The reference code fails or silently reshapes with more; here it is an error.
    /// </summary>
    public static bool NeedsOneVisualToken(RoutingFunction f) => f is RoutingFunction.Add or RoutingFunction.Mul or RoutingFunction.MulExpand or RoutingFunction.XtXtTXv;

    /// <summary>z = route(a_t, a_v) for a parameter-free function; a_t [B, L, k], a_v [B or 1, N_v, k] → [B, L, k].</summary>
    public static Tensor Route(RoutingFunction f, Tensor at, Tensor av)
    {
        if (at.dim() != 3 || av.dim() != 3 || at.shape[^1] != av.shape[^1])
            throw new ArgumentException($"routing needs a_t [B, L, k] and a_v [B, N_v, k], got [{string.Join(", ", at.shape)}] and [{string.Join(", ", av.shape)}]");
        if (NeedsOneVisualToken(f) && av.shape[1] != 1)
            throw new BadInputException($"routing '{Name(f)}' is defined for one visual token (the pooled feature); the model gives {av.shape[1]}: use xt_xvT_xv, xt_xvT_xv_relu or cross_attention");
        // True transposes throughout: with N_v > 1 the reference code's reshape([B, k, N_v]) is not a transpose.
        return f switch
        {
            RoutingFunction.Add => at + av,
            RoutingFunction.Mul => at * av,
            RoutingFunction.MulExpand => at.sum(-1, keepdim: true) * av,
            RoutingFunction.XtXvTXv => at.matmul(av.transpose(1, 2)).matmul(av),
            RoutingFunction.XtXvTXvRelu => F.relu(at).matmul(F.relu(av).transpose(1, 2)).matmul(av),
            RoutingFunction.XtXtTXv => at.matmul(at.transpose(1, 2)).matmul(av.expand(at.shape[0], at.shape[1], at.shape[2])),
            _ => throw new ArgumentException($"'{Name(f)}' is not a parameter-free routing function"),
        };
    }
}
