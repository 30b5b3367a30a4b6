using System.Text;

namespace VlPeft.Tests.Text;

/// <summary>
/// Writes SentencePiece ModelProto files byte by byte from sentencepiece_model.proto's field numbers
/// (pieces = 1 {piece = 1, score = 2, type = 3}; trainer_spec = 2 {model_type = 3, unk_id = 40,
/// bos_id = 41, eos_id = 42, pad_id = 43, byte_fallback = 35}; normalizer_spec = 3 {name = 1,
/// add_dummy_prefix = 3, remove_extra_whitespaces = 4, escape_whitespaces = 5}).
/// </summary>
static class SentencePieceFixture
{
    public const int Normal = 1, Unknown = 2, Control = 3;

    public static byte[] Model(IEnumerable<(string Piece, float Score, int Type)> pieces, int modelType, int unk, int bos, int eos, int pad)
    {
        var model = new List<byte>();
        foreach (var (piece, score, type) in pieces)
        {
            var p = new List<byte>();
            p.AddRange(Bytes(1, Encoding.UTF8.GetBytes(piece)));
            p.Add(Tag(2, 5)); p.AddRange(BitConverter.GetBytes(score));
            p.AddRange(Varint(3, type));
            model.AddRange(Bytes(1, p.ToArray()));
        }
        var trainer = new List<byte>();
        trainer.AddRange(Varint(3, modelType));
        trainer.AddRange(Varint(40, unk)); trainer.AddRange(Varint(41, bos)); trainer.AddRange(Varint(42, eos)); trainer.AddRange(Varint(43, pad));
        model.AddRange(Bytes(2, trainer.ToArray()));
        var normalizer = new List<byte>();
        normalizer.AddRange(Bytes(1, Encoding.UTF8.GetBytes("identity")));
        normalizer.AddRange(Varint(3, 1)); normalizer.AddRange(Varint(4, 1)); normalizer.AddRange(Varint(5, 1));
        model.AddRange(Bytes(3, normalizer.ToArray()));
        return model.ToArray();
    }

    static byte Tag(int field, int wire) => (byte)((field << 3) | wire); // fields < 16 only
    static IEnumerable<byte> TagBytes(int field, int wire) => Raw((ulong)((field << 3) | wire));

    static IEnumerable<byte> Varint(int field, long value) => TagBytes(field, 0).Concat(Raw((ulong)value));
    static IEnumerable<byte> Bytes(int field, byte[] data) => TagBytes(field, 2).Concat(Raw((ulong)data.Length)).Concat(data);

    static IEnumerable<byte> Raw(ulong value)
    {
        var bytes = new List<byte>();
        do
        {
            byte b = (byte)(value & 0x7F);
            value >>= 7;
            bytes.Add(value != 0 ? (byte)(b | 0x80) : b);
        } while (value != 0);
        return bytes;
    }
}
