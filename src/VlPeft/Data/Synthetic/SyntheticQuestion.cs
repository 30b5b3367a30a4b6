namespace VlPeft.Data.Synthetic;

/// <summary>A generated question before it is written in a benchmark's format.</summary>
public sealed record SyntheticQuestion(
    string Family,
    string Question,
    IReadOnlyList<string> Choices,
    int Answer,
    string Hint,
    string Lecture,
    string Solution,
    Scene? Scene,
    string Subject,
    string Grade,
    string Topic);
