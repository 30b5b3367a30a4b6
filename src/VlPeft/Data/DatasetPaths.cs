namespace VlPeft.Data;

static class DatasetPaths
{
    /// <summary>Joins a relative path under a dataset root and refuses paths that would leave it.</summary>
    public static string Inside(string root, string relative, string id, string file)
    {
        string fullRoot = Path.GetFullPath(root);
        string full = Path.GetFullPath(Path.Combine(fullRoot, relative));
        if (!full.StartsWith(fullRoot.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw DatasetJson.Bad(id, $"image path '{relative}' leaves the dataset root", file);
        return full;
    }
}
