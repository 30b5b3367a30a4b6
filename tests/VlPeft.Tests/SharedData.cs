namespace VlPeft.Tests;

/// <summary>The real benchmark samples in ../shared/data beside the repository (present on every machine and in CI).</summary>
static class SharedData
{
    public static string Path(params string[] parts)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(System.IO.Path.Combine(dir.FullName, "VlPeft.slnx"))) dir = dir.Parent;
        Assert.True(dir != null, "repository root not found above the test binaries");
        string path = System.IO.Path.Combine(new[] { dir!.Parent!.FullName, "shared", "data" }.Concat(parts).ToArray());
        Assert.True(File.Exists(path) || Directory.Exists(path), $"shared data missing: {path}");
        return path;
    }
}
