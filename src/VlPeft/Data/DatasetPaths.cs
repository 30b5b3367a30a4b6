namespace VlPeft.Data;

static class DatasetPaths
{
    /// <summary>Fails for a missing image when the caller needs the images.</summary>
    public static void CheckImage(string imagePath, ReadOptions options, string id, string file)
    {
        if (options.RequireImages && !File.Exists(imagePath)) throw DatasetJson.Bad(id, $"image file is missing: {imagePath}", file);
    }

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
