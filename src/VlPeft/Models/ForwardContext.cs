using static TorchSharp.torch;

namespace VlPeft.Models;

/// <summary>
/// Named tensors of the forward in progress, published by the composite for the layers that need them
/// (the routing functions' visual feature x_v). One per model instance, not static, so parallel tests
/// and several models never see each other's tensors; the composite clears it when its forward ends.
/// </summary>
public sealed class ForwardContext
{
    /// <summary>The visual feature routed adapters mix in: [B, N_v, d] (N_v = 1 for a pooled feature).</summary>
    public const string VisualFeatures = "visual_features";

    readonly Dictionary<string, Tensor> tensors = new();

    public void Publish(string name, Tensor value) => tensors[name] = value;

    public Tensor Get(string name) => tensors.TryGetValue(name, out var value) ? value
        : throw new InvalidOperationException($"no '{name}' was published for this forward: the model does not provide it, or it is read outside a forward");

    public IReadOnlyCollection<string> Names => tensors.Keys;

    /// <summary>
    /// Generation with a cache: <see cref="DecodingPhase.Prompt"/> while the prompt runs, then
    /// <see cref="DecodingPhase.Continue"/> for steps that see only new tokens. Adapters that read a
    /// sequence's first token (LaVIN's router) keep what they computed on the prompt, as LaVIN does.
    /// </summary>
    public DecodingPhase Phase { get; set; }

    public void Clear() => tensors.Clear();

    /// <summary>Publishes while the returned scope lives; disposing it clears the context.</summary>
    public Scope Begin() => new(this);

    public readonly struct Scope : IDisposable
    {
        readonly ForwardContext context;
        public Scope(ForwardContext context) => this.context = context;
        public void Dispose() => context.Clear();
    }
}

public enum DecodingPhase { None, Prompt, Continue }

/// <summary>
/// Implemented by adapters that read a per-forward tensor: the PEFT model hands them the model's
/// context when it attaches them, and checks the model publishes what they need.
/// </summary>
public interface IForwardContextConsumer
{
    IReadOnlyList<string> ContextNeeds { get; }
    void Bind(ForwardContext context);
}
