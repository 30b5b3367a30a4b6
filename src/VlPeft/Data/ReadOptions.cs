namespace VlPeft.Data;

/// <summary>How readers treat images and broken records.</summary>
public sealed record ReadOptions
{
    /// <summary>Check that every referenced image file exists (training and prediction need them; scoring does not).</summary>
    public bool RequireImages { get; init; }
    /// <summary>Count and report broken records instead of failing on the first one.</summary>
    public bool SkipBadRecords { get; init; }
}

/// <summary>Records read, plus any skipped with <see cref="ReadOptions.SkipBadRecords"/> (with the reason).</summary>
public sealed record ReadResult<T>(IReadOnlyList<T> Records, IReadOnlyList<string> Skipped);
