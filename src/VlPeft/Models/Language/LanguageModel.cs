using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Models.Language;

/// <summary>
/// What the multimodal composites need from a language model: its token embedding, and logits
/// from input embeddings — causally for decoder-only LMs, through encoder and decoder for T5.
/// </summary>
public abstract class LanguageModel : nn.Module
{
    protected LanguageModel(string name) : base(name) { }

    public abstract bool IsEncoderDecoder { get; }
    public abstract long VocabSize { get; }

    /// <summary>input_ids [B, T] → embeddings [B, T, D].</summary>
    public abstract Tensor EmbedTokens(Tensor ids);

    /// <summary>Decoder-only: logits [B, T, V] for inputs_embeds with a [B, T] padding mask (1 = token).</summary>
    public virtual Tensor CausalLogits(Tensor inputsEmbeds, Tensor attentionMask) =>
        throw new NotSupportedException($"{GetType().Name} is an encoder-decoder model");

    /// <summary>Encoder-decoder: logits [B, T_dec, V].</summary>
    public virtual Tensor Seq2SeqLogits(Tensor encoderEmbeds, Tensor encoderMask, Tensor decoderInputIds, Tensor? decoderMask) =>
        throw new NotSupportedException($"{GetType().Name} is a decoder-only model");
}
