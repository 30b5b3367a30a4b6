// MSBuild inline task (RoslynCodeTaskFactory, see Directory.Build.targets).
//
// Why: TorchSharp 0.107.0's libLibTorchSharp.so was linked with GCC 13, which records a version
// need GLIBCXX_3.4.32 for the marker symbol _ZSt21ios_base_library_initv. Nothing binds that
// symbol (no relocations), but glibc refuses to load the library on hosts whose libstdc++ stops at
// 3.4.30 (Debian 12). Setting VER_FLG_WEAK on that one version-need entry makes the loader accept
// it. We patch only copies in our build/publish output, never the NuGet cache, and write through a
// temp file + rename so a hard link into the cache could never be modified.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class MarkGlibcxxNeedWeak : Task
{
    /// <summary>Folders to search (recursively) for libLibTorchSharp.so.</summary>
    [Required] public string[] Folders { get; set; } = Array.Empty<string>();

    public string VersionName { get; set; } = "GLIBCXX_3.4.32";

    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    public override bool Execute()
    {
        foreach (var folder in Folders)
        {
            if (!Directory.Exists(folder)) continue;
            foreach (var path in Directory.GetFiles(folder, "libLibTorchSharp.so", SearchOption.AllDirectories))
            {
                try
                {
                    int changed = Patch(path, VersionName);
                    if (changed > 0)
                        Log.LogMessage(MessageImportance.Normal, "Marked " + VersionName + " weak in " + path);
                }
                catch (Exception e)
                {
                    Log.LogWarning("Could not patch " + path + ": " + e.Message);
                }
            }
        }
        return !Log.HasLoggedErrors;
    }

    /// <summary>Returns the number of entries changed (0 when already weak or absent).</summary>
    static int Patch(string path, string versionName)
    {
        byte[] elf = File.ReadAllBytes(path);
        // ELF64 little-endian only (e_ident[EI_CLASS] = 2, e_ident[EI_DATA] = 1).
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F'
            || elf[4] != 2 || elf[5] != 1)
            return 0;
        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A);
        int shnum = BitConverter.ToUInt16(elf, 0x3C);
        int changed = 0;
        for (int i = 0; i < shnum; i++)
        {
            long sh = (long)shoff + (long)i * shentsize;
            if (sh + 0x30 > elf.Length) break;
            if (BitConverter.ToUInt32(elf, (int)sh + 0x04) != ShtGnuVerneed) continue;
            long offset = (long)BitConverter.ToUInt64(elf, (int)sh + 0x18);
            uint link = BitConverter.ToUInt32(elf, (int)sh + 0x28);
            uint count = BitConverter.ToUInt32(elf, (int)sh + 0x2C);
            long strtab = (long)BitConverter.ToUInt64(elf, (int)((long)shoff + (long)link * shentsize) + 0x18);

            long need = offset;
            for (uint n = 0; n < count; n++)
            {
                int auxCount = BitConverter.ToUInt16(elf, (int)need + 0x02);
                long aux = need + BitConverter.ToUInt32(elf, (int)need + 0x08);
                for (int a = 0; a < auxCount; a++)
                {
                    uint nameOffset = BitConverter.ToUInt32(elf, (int)aux + 0x08);
                    if (ReadCString(elf, strtab + nameOffset) == versionName)
                    {
                        ushort flags = BitConverter.ToUInt16(elf, (int)aux + 0x04);
                        if ((flags & VerFlgWeak) == 0)
                        {
                            flags |= VerFlgWeak;
                            elf[aux + 0x04] = (byte)(flags & 0xff);
                            elf[aux + 0x05] = (byte)(flags >> 8);
                            changed++;
                        }
                    }
                    uint nextAux = BitConverter.ToUInt32(elf, (int)aux + 0x0C);
                    if (nextAux == 0) break;
                    aux += nextAux;
                }
                uint nextNeed = BitConverter.ToUInt32(elf, (int)need + 0x0C);
                if (nextNeed == 0) break;
                need += nextNeed;
            }
        }
        if (changed > 0)
        {
            string temp = path + ".weak-tmp";
            File.WriteAllBytes(temp, elf);
            File.Delete(path); // unlink first: never write through a hard link
            File.Move(temp, path);
        }
        return changed;
    }

    static string ReadCString(byte[] bytes, long start)
    {
        long end = start;
        while (end < bytes.Length && bytes[end] != 0) end++;
        return Encoding.ASCII.GetString(bytes, (int)start, (int)(end - start));
    }
}
