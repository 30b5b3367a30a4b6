using System.Runtime.InteropServices;

namespace VlPeft.Diagnostics;

/// <summary>
/// Loads TorchSharp's native library directly to get the loader's real error. TorchSharp's own
/// message blames a missing libtorch package even when the cause is a libstdc++ version need.
/// </summary>
public static class NativeLibraryCheck
{
    public const string LibraryFileName = "libLibTorchSharp.so";

    /// <summary>Where the library was found (or null) and the loader's error (null when it loaded).</summary>
    public static (string? Path, string? Error) TryLoad()
    {
        if (!OperatingSystem.IsLinux())
            return (null, null); // Other platforms have no patched library to check; TorchSharp reports itself.
        string baseDir = AppContext.BaseDirectory;
        string[] candidates =
        {
            Path.Combine(baseDir, "runtimes", "linux-x64", "native", LibraryFileName),
            Path.Combine(baseDir, LibraryFileName),
        };
        string? path = candidates.FirstOrDefault(File.Exists);
        if (path == null)
            return (null, $"{LibraryFileName} not found under {baseDir} (is libtorch-cpu-linux-x64 referenced by the executable?)");
        try
        {
            NativeLibrary.Load(path);
            return (path, null);
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            return (path, e.Message);
        }
    }
}
