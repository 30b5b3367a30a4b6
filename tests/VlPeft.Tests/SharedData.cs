namespace VlPeft.Tests;

/// <summary>The real benchmark samples in the repository's tests/data (sources and licences in its README).</summary>
static class SharedData
{
    public static string Path(params string[] parts)
    {
        string path = RepoPath.Of(new[] { "tests", "data" }.Concat(parts).ToArray());
        Assert.True(File.Exists(path) || Directory.Exists(path), $"test data missing: {path}");
        return path;
    }
}
