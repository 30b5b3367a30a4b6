using System.Runtime;

namespace VlPeft.Runtime;

/// <summary>
/// A stretch of tensor work during which no garbage collection starts. TorchSharp 0.107 passes the
/// implicit <c>Scalar</c>s it creates (the alpha of every <c>a + b</c>, the operand of <c>x * 0.5</c>)
/// to libtorch without keeping them alive, so a collection started by another thread during the
/// native call can run the Scalar's finalizer and free it while libtorch reads it: the step fails
/// with "Expected false to be true … toFloat" or worse. Seen once in a demo run; reproduced in
/// seconds with a second thread allocating (see GcQuietRegionTests). Inside a region the collector
/// waits until <see cref="Dispose"/>, where the owning thread is back in managed code. Nested regions
/// are no-ops; a region whose budget is exceeded ends early (the runtime collects), as before.
/// VLPEFT_GC_REGIONS=0 turns regions off.
/// </summary>
public readonly struct GcQuietRegion : IDisposable
{
    /// <summary>Managed allocation allowed inside one region (all threads): a training step allocates a few MB of wrappers.</summary>
    public const long BudgetBytes = 32L << 20;

    static readonly bool Enabled = Environment.GetEnvironmentVariable("VLPEFT_GC_REGIONS") != "0";

    readonly bool started;

    GcQuietRegion(bool started) => this.started = started;

    public static GcQuietRegion Enter()
    {
        if (!Enabled || GCSettings.LatencyMode == GCLatencyMode.NoGCRegion) return new GcQuietRegion(false);
        try
        {
            // An ephemeral collection makes room now, on this thread, at a safe point.
            return new GcQuietRegion(GC.TryStartNoGCRegion(BudgetBytes, disallowFullBlockingGC: true));
        }
        catch (InvalidOperationException)
        {
            return new GcQuietRegion(false); // another thread holds a region
        }
    }

    public void Dispose()
    {
        if (!started || GCSettings.LatencyMode != GCLatencyMode.NoGCRegion) return;
        try
        {
            GC.EndNoGCRegion();
        }
        catch (InvalidOperationException)
        {
            // The runtime already ended it (budget exceeded): nothing to undo.
        }
    }
}
