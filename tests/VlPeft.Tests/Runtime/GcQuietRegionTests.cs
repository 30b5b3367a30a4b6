using System.Runtime;
using TorchSharp;
using VlPeft.Runtime;
using static TorchSharp.torch;

namespace VlPeft.Tests.Runtime;

[CollectionDefinition("garbage collector", DisableParallelization = true)]
public sealed class GarbageCollectorCollection { }

[Collection("garbage collector")]   // alone: other tests' allocations would end a region early
public class GcQuietRegionTests
{
    [Fact]
    public void No_collection_starts_inside_a_region_and_nested_regions_leave_it_open()
    {
        using (GcQuietRegion.Enter())
        {
            Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            int before = GC.CollectionCount(0);
            var other = new Thread(() => { for (int i = 0; i < 1000; i++) GC.KeepAlive(new byte[1000]); }); // allocates 1 MB
            other.Start();
            other.Join();
            using (GcQuietRegion.Enter()) { }
            Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            Assert.Equal(before, GC.CollectionCount(0));
        }
        Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
    }

    /// <summary>
    /// The race the region exists for: a second thread allocating makes collections start while the main
    /// thread is inside libtorch with an implicit Scalar that nothing keeps alive. Without regions this
    /// loop failed after about 2,000 additions ("Expected false to be true … toFloat").
    /// </summary>
    [SlowFact]
    [Trait("Category", "Slow")]
    public void Implicit_scalars_survive_their_native_calls_while_another_thread_allocates()
    {
        using var x = torch.randn(512, 1024);
        using var y = torch.randn(512, 1024);
        using var stop = new CancellationTokenSource();
        var allocator = new Thread(() =>
        {
            var keep = new List<byte[]>();
            while (!stop.IsCancellationRequested)
            {
                keep.Add(new byte[2000]);
                if (keep.Count > 50) keep.Clear();
                Thread.SpinWait(200);
            }
        });
        allocator.Start();
        try
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            while (watch.Elapsed.TotalSeconds < 20)
            {
                using var region = GcQuietRegion.Enter();
                for (int k = 0; k < 20; k++)
                {
                    using var scope = torch.NewDisposeScope();
                    var z = (x + y) * 0.5;
                }
            }
        }
        finally
        {
            stop.Cancel();
            allocator.Join();
        }
    }
}
