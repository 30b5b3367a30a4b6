namespace VlPeft;

/// <summary>Where the library reports warnings (unknown config keys, skipped data). The CLI and tests may redirect it.</summary>
public static class Log
{
    public static Action<string> Warning { get; set; } = message => Console.Error.WriteLine($"warning: {message}");
}
