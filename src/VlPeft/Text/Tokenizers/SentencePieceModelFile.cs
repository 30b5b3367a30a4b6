using Google.Protobuf;

namespace VlPeft.Text.Tokenizers;

/// <summary>
/// Edits a SentencePiece <c>.model</c> (a ModelProto) without a schema: T5's models set
/// <c>trainer_spec.bos_id = -1</c>, which makes Microsoft.ML.Tokenizers 2.0.1 index out of range.
/// Setting it to the pad id loads the same vocabulary; T5 never adds a BOS, so nothing changes.
/// </summary>
public static class SentencePieceModelFile
{
    const int TrainerSpecField = 2, BosIdField = 41, ModelTypeField = 3;

    /// <summary>trainer_spec.bos_id (−1 when the model has none), or null if unset.</summary>
    public static int? BosId(byte[] model) => ReadTrainerInt(model, BosIdField);

    /// <summary>trainer_spec.model_type: 1 = UNIGRAM, 2 = BPE (null = unset, which means UNIGRAM).</summary>
    public static int? ModelType(byte[] model) => ReadTrainerInt(model, ModelTypeField);

    static int? ReadTrainerInt(byte[] model, int field)
    {
        var input = new CodedInputStream(model);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagFieldNumber(tag) == TrainerSpecField && WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited)
            {
                var spec = new CodedInputStream(input.ReadBytes().ToByteArray());
                uint inner;
                int? value = null;
                while ((inner = spec.ReadTag()) != 0)
                {
                    if (WireFormat.GetTagFieldNumber(inner) == field && WireFormat.GetTagWireType(inner) == WireFormat.WireType.Varint) value = spec.ReadInt32();
                    else spec.SkipLastField();
                }
                return value;
            }
            input.SkipLastField();
        }
        return null;
    }

    /// <summary>A copy of the model with trainer_spec.bos_id replaced.</summary>
    public static byte[] WithBosId(byte[] model, int bosId)
    {
        using var output = new MemoryStream();
        var writer = new CodedOutputStream(output);
        var input = new CodedInputStream(model);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagFieldNumber(tag) == TrainerSpecField && WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited)
            {
                writer.WriteTag(tag);
                writer.WriteBytes(ByteString.CopyFrom(RewriteTrainerSpec(input.ReadBytes().ToByteArray(), bosId)));
                continue;
            }
            CopyField(input, writer, tag);
        }
        writer.Flush();
        return output.ToArray();
    }

    static byte[] RewriteTrainerSpec(byte[] spec, int bosId)
    {
        using var output = new MemoryStream();
        var writer = new CodedOutputStream(output);
        var input = new CodedInputStream(spec);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagFieldNumber(tag) == BosIdField) { input.SkipLastField(); continue; }
            CopyField(input, writer, tag);
        }
        writer.WriteTag(BosIdField, WireFormat.WireType.Varint);
        writer.WriteInt32(bosId);
        writer.Flush();
        return output.ToArray();
    }

    static void CopyField(CodedInputStream input, CodedOutputStream writer, uint tag)
    {
        writer.WriteTag(tag);
        switch (WireFormat.GetTagWireType(tag))
        {
            case WireFormat.WireType.Varint: writer.WriteUInt64(input.ReadUInt64()); break;
            case WireFormat.WireType.Fixed64: writer.WriteFixed64(input.ReadFixed64()); break;
            case WireFormat.WireType.Fixed32: writer.WriteFixed32(input.ReadFixed32()); break;
            case WireFormat.WireType.LengthDelimited: writer.WriteBytes(input.ReadBytes()); break;
            default: throw new BadInputException("SentencePiece model uses a protobuf wire type VlPeft does not copy");
        }
    }
}
