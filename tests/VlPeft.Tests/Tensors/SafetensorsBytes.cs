using System.Text;

namespace VlPeft.Tests.Tensors;

/// <summary>
/// Builds safetensors files byte by byte from the format description (models.md §12), independently
/// of the library's writer: 8-byte little-endian length, JSON header, raw data.
/// </summary>
static class SafetensorsBytes
{
    public static byte[] Build(string headerJson, byte[] data, bool padToEight = true)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        int length = padToEight ? (header.Length + 7) / 8 * 8 : header.Length;
        var bytes = new byte[8 + length + data.Length];
        BitConverter.GetBytes((ulong)length).CopyTo(bytes, 0);
        header.CopyTo(bytes, 8);
        for (int i = header.Length; i < length; i++) bytes[8 + i] = (byte)' ';
        data.CopyTo(bytes, 8 + length);
        return bytes;
    }

    public static byte[] Floats(params float[] values) => values.SelectMany(BitConverter.GetBytes).ToArray();
}
