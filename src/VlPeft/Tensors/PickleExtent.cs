using System.Text;

namespace VlPeft.Tensors;

/// <summary>
/// Where a pickle ends, found by walking its opcodes without building anything: lengths are checked against the bytes
/// at hand before they are used, so a lying length field costs nothing (unlike handing a stream to an unpickler, which
/// allocates what the field claims). Covers protocols 0–5.
/// </summary>
static class PickleExtent
{
    /// <summary>The offset just after the STOP opcode of the pickle starting at <paramref name="start"/>; −1 if the buffer ends first.</summary>
    public static long End(ReadOnlySpan<byte> data, long start)
    {
        long at = start;
        while (true)
        {
            if (at >= data.Length) return -1;
            byte op = data[(int)at++];
            long skip;
            switch (op)
            {
                case (byte)'.': return at;                                                       // STOP
                case (byte)'(' or (byte)'0' or (byte)'1' or (byte)'2' or (byte)'N' or (byte)'R' or (byte)'b' or (byte)'d' or (byte)'}'
                    or (byte)'a' or (byte)'e' or (byte)'l' or (byte)']' or (byte)'o' or (byte)'s' or (byte)'u' or (byte)'t' or (byte)')'
                    or (byte)'Q' or 0x85 or 0x86 or 0x87 or 0x88 or 0x89 or 0x81 or 0x92 or 0x93 or 0x94 or 0x8f or 0x90 or 0x91 or 0x97 or 0x98:
                    skip = 0; break;
                case (byte)'K' or (byte)'h' or (byte)'q' or 0x82 or 0x80: skip = 1; break;
                case (byte)'M' or 0x83: skip = 2; break;
                case (byte)'J' or (byte)'j' or (byte)'r' or 0x84: skip = 4; break;
                case (byte)'G' or 0x95: skip = 8; break;
                case (byte)'U' or 0x8a or 0x8c or (byte)'C':
                    if (at + 1 > data.Length) return -1;
                    skip = 1 + data[(int)at]; break;
                case (byte)'T' or (byte)'X' or 0x8b or (byte)'B':
                    if (at + 4 > data.Length) return -1;
                    skip = 4 + BitConverter.ToUInt32(data.Slice((int)at, 4)); break;
                case 0x8d or 0x8e or 0x96:
                    if (at + 8 > data.Length) return -1;
                    long length = BitConverter.ToInt64(data.Slice((int)at, 8));
                    if (length < 0) throw new FormatException($"pickle opcode 0x{op:x2} at byte {at - 1} has a negative length");
                    skip = 8 + length; break;
                case (byte)'I' or (byte)'L' or (byte)'F' or (byte)'S' or (byte)'V' or (byte)'P' or (byte)'g' or (byte)'p':
                    skip = Line(data, at); if (skip < 0) return -1; break;
                case (byte)'c' or (byte)'i':
                    long first = Line(data, at);
                    if (first < 0) return -1;
                    long second = Line(data, at + first);
                    if (second < 0) return -1;
                    skip = first + second; break;
                default:
                    throw new FormatException($"unknown pickle opcode 0x{op:x2} at byte {at - 1}");
            }
            if (skip > data.Length - at) return -1;
            at += skip;
        }
    }

    /// <summary>Bytes up to and including the next newline, or −1 without one.</summary>
    static long Line(ReadOnlySpan<byte> data, long at)
    {
        int newline = data[(int)at..].IndexOf((byte)'\n');
        return newline < 0 ? -1 : newline + 1;
    }
}
