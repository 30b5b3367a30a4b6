namespace VlPeft.Tests;

/// <summary>The real benchmark samples in the repository's tests/data (sources and licences in its README).</summary>
static class SharedData
{
    public static string Path(params string[] parts)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(System.IO.Path.Combine(dir.FullName, "VlPeft.slnx"))) dir = dir.Parent;
        Assert.True(dir != null, "repository root not found above the test binaries");
        string path = System.IO.Path.Combine(new[] { dir!.FullName, "tests", "data" }.Concat(parts).ToArray());
        Assert.True(File.Exists(path) || Directory.Exists(path), $"test data missing: {path}");
        return path;
    }
}
