using System.Runtime.InteropServices;

namespace VlPeft;

/// <summary>
/// fsync for files and folders, so a checkpoint renamed into place survives a power loss, not only a
/// killed process. .NET flushes files (<see cref="FileStream.Flush(bool)"/>) but cannot open a folder, so
/// folders are synced through libc on Linux (elsewhere the rename is as durable as the platform makes it).
/// </summary>
public static partial class Durability
{
    public static void SyncFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Every file under <paramref name="folder"/>, then the folder itself.</summary>
    public static void SyncTree(string folder)
    {
        foreach (var file in Directory.GetFiles(folder, "*", SearchOption.AllDirectories)) SyncFile(file);
        SyncFolder(folder);
    }

    public static void SyncFolder(string folder)
    {
        if (!OperatingSystem.IsLinux()) return;
        const int ReadOnlyDirectory = 0x10000;   // O_RDONLY | O_DIRECTORY on Linux
        int fd = Open(folder, ReadOnlyDirectory);
        if (fd < 0) return;                       // nothing to sync through (permissions, exotic file systems)
        try
        {
            Fsync(fd);
        }
        finally
        {
            Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
