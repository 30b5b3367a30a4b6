namespace VlPeft.Tests;

/// <summary>Paths inside the repository the test binaries were built from.</summary>
static class RepoPath
{
    public static string Of(params string[] parts)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "VlPeft.slnx"))) dir = dir.Parent;
        Assert.True(dir != null, "repository root not found above the test binaries");
        return Path.Combine(new[] { dir!.FullName }.Concat(parts).ToArray());
    }
}
