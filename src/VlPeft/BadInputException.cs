namespace VlPeft;

/// <summary>
/// A user-supplied file, record or argument is not what VlPeft expects. The CLI prints
/// <c>error: {Message} ({File})</c> and exits with code 2; anything else is an internal failure.
/// </summary>
public class BadInputException : Exception
{
    public BadInputException(string message, string? file = null, Exception? inner = null)
        : base(message, inner) => File = file;

    /// <summary>The file (or record id) the problem is in, when known.</summary>
    public string? File { get; }
}
