namespace VlPeft.Bench;

/// <summary>Resident set size figures of this process from /proc (Linux).</summary>
static class ProcessMemory
{
    /// <summary>Peak RSS so far (VmHWM), in bytes.</summary>
    public static long PeakRss() => Read("VmHWM:");

    public static long CurrentRss() => Read("VmRSS:");

    static long Read(string key)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(key));
        return long.Parse(line[key.Length..].Trim().Split(' ')[0]) * 1024;
    }

    public static string Mb(long bytes) => $"{bytes / 1048576.0:F0} MB";
}
