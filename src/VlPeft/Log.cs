namespace VlPeft;

/// <summary>Where the library reports warnings (unknown config keys, skipped data). The CLI and tests may redirect it.</summary>
public static class Log
{
    public static Action<string> Warning { get; set; } = message => Console.Error.WriteLine($"warning: {message}");
    /// <summary>Progress worth a line on stderr (the memory estimate of a run).</summary>
    public static Action<string> Info { get; set; } = message => Console.Error.WriteLine(message);
}
