namespace VlPeft;

/// <summary>
/// Writes a file so that readers (and a crash) see either the old content or the new one, never
/// half: write a temporary file beside it, then rename over the target.
/// </summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Replace(path, temp => File.WriteAllText(temp, text));

    public static void WriteAllBytes(string path, byte[] bytes) => Replace(path, temp => File.WriteAllBytes(temp, bytes));

    /// <summary>Runs <paramref name="write"/> on a temporary path, then moves it over <paramref name="path"/>.</summary>
    public static void Replace(string path, Action<string> write)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!); // an output path may name a new folder
        string temp = path + $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            write(temp);
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
