using System.Text;
using VlPeft.Diagnostics;

namespace VlPeft.Tests;

/// <summary>
/// The build marks libLibTorchSharp.so's GLIBCXX_3.4.32 version need weak. This reads the ELF
/// version-need table of the copy in the test output directly, independently of the build task.
/// </summary>
public class NativeLibraryFixTests
{
    [Fact]
    public void Output_copy_has_the_glibcxx_3_4_32_need_marked_weak()
    {
        var (path, error) = NativeLibraryCheck.TryLoad();
        Assert.Null(error);
        var needs = VersionNeeds(File.ReadAllBytes(path!));
        Assert.Contains("GLIBCXX_3.4.30", needs.Keys); // sanity: the table was parsed
        if (needs.TryGetValue("GLIBCXX_3.4.32", out ushort flags))
            Assert.Equal(2, flags & 2);
    }

    /// <summary>Version name → vna_flags, walking SHT_GNU_verneed per the ELF64 spec.</summary>
    static Dictionary<string, ushort> VersionNeeds(byte[] elf)
    {
        var result = new Dictionary<string, ushort>();
        long shoff = (long)BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (int i = 0; i < shnum; i++)
        {
            int sh = (int)(shoff + i * shentsize);
            if (BitConverter.ToUInt32(elf, sh + 4) != 0x6ffffffe) continue;
            int offset = (int)BitConverter.ToUInt64(elf, sh + 0x18);
            int strtab = (int)BitConverter.ToUInt64(elf, (int)(shoff + BitConverter.ToUInt32(elf, sh + 0x28) * shentsize) + 0x18);
            int need = offset;
            for (uint n = 0; n < BitConverter.ToUInt32(elf, sh + 0x2C); n++)
            {
                int aux = need + (int)BitConverter.ToUInt32(elf, need + 8);
                for (int a = 0; a < BitConverter.ToUInt16(elf, need + 2); a++)
                {
                    int name = strtab + (int)BitConverter.ToUInt32(elf, aux + 8);
                    int end = Array.IndexOf(elf, (byte)0, name);
                    result[Encoding.ASCII.GetString(elf, name, end - name)] = BitConverter.ToUInt16(elf, aux + 4);
                    aux += (int)BitConverter.ToUInt32(elf, aux + 12);
                }
                need += (int)BitConverter.ToUInt32(elf, need + 12);
            }
        }
        return result;
    }
}
