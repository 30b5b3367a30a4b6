namespace VlPeft.Training;

/// <summary>
/// Stable seeds derived from the run seed and a position in training. (.NET's HashCode is
/// randomized per process, which would make a resumed process diverge.)
/// </summary>
public static class Seeds
{
    /// <summary>SplitMix64 over the values; the same inputs give the same seed in every process.</summary>
    public static int Mix(int seed, int position, int stream)
    {
        ulong x = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ (ulong)(uint)position * 0xBF58476D1CE4E5B9UL ^ (ulong)(uint)stream * 0x94D049BB133111EBUL;
        x ^= x >> 30;
        x *= 0xBF58476D1CE4E5B9UL;
        x ^= x >> 27;
        x *= 0x94D049BB133111EBUL;
        x ^= x >> 31;
        return (int)(x & 0x7FFFFFFF);
    }
}
