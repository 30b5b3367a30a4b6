using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Models.Language;

/// <summary>
/// What the multimodal composites need from a language model: its token embedding, logits from input
/// embeddings, logits aligned with their targets, and step-by-step decoding. The encoder-decoder vs
/// decoder-only difference lives here, once: T5 overrides; decoder-only models use the defaults.
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

    /// <summary>
    /// The model's logits for one batch. Decoder-only: over the whole input [B, T, V]. Encoder-decoder:
    /// the decoder's [B, T_dec, V], its input being <paramref name="decoderInputIds"/> or the labels shifted right.
    /// </summary>
    public virtual Tensor Logits(Tensor inputsEmbeds, Tensor attentionMask, Tensor? labels, Tensor? decoderInputIds = null, Tensor? decoderMask = null) =>
        CausalLogits(inputsEmbeds, attentionMask);

    /// <summary>
    /// Logits paired with the token each position predicts, both flattened to matching shapes
    /// ([B, N, V] and [B, N], −100 = no loss). Decoder-only (HF legacy path): the labels cover the text
    /// part at the end of the input, and position t predicts token t + 1. Encoder-decoder: one to one.
    /// </summary>
    public virtual (Tensor Logits, Tensor Targets) AlignWithLabels(Tensor logits, Tensor labels)
    {
        long n = labels.shape[1];
        return (logits[.., ^(int)n..][.., ..^1], labels[.., 1..]);
    }

    /// <summary>Mean cross-entropy of the logits against the labels they predict (−100 ignored), in fp32.</summary>
    public Tensor LabelLoss(Tensor logits, Tensor labels)
    {
        var (predicted, targets) = AlignWithLabels(logits, labels);
        return F.cross_entropy(predicted.reshape(-1, logits.shape[^1]).to(ScalarType.Float32), targets.reshape(-1), ignore_index: -100);
    }

    /// <summary>Starts generating after a prompt given as embeddings [1, T, D] with its mask [1, T].</summary>
    public virtual IncrementalDecoder StartDecoding(Tensor promptEmbeds, Tensor promptMask) => new CausalDecoder(this, promptEmbeds);

    /// <summary>
    /// Decoder-only generation for models without a KV cache (OPT): the prompt embeddings are kept and each step
    /// re-runs the whole sequence, which is fine for the benchmarks' short answers. LLaMA overrides with a cache.
    /// </summary>
    sealed class CausalDecoder : IncrementalDecoder
    {
        readonly LanguageModel lm;
        readonly Tensor prompt;

        public CausalDecoder(LanguageModel lm, Tensor prompt)
        {
            this.lm = lm;
            this.prompt = prompt;
        }

        public override IReadOnlyList<long> StartIds => Array.Empty<long>();

        public override Tensor NextLogits(IReadOnlyList<long> ids)
        {
            var all = ids.Count == 0 ? prompt : torch.cat(new[] { prompt, lm.EmbedTokens(torch.tensor(ids.ToArray()).unsqueeze(0)).to(prompt.dtype) }, 1);
            var mask = torch.ones(1, all.shape[1], dtype: ScalarType.Int64);
            return lm.CausalLogits(all, mask)[0, -1];
        }
    }
}

/// <summary>
/// One generation in progress: the ids the decoder starts from (T5: decoder_start_token_id; decoder-only:
/// none) and the next-token logits [V] after a sequence that begins with them. State that does not change
/// between steps (the encoder output) is computed once.
/// </summary>
public abstract class IncrementalDecoder : IDisposable
{
    public abstract IReadOnlyList<long> StartIds { get; }
    public abstract Tensor NextLogits(IReadOnlyList<long> ids);

    /// <summary>Frees state kept between steps (a KV cache).</summary>
    public virtual void Dispose() { }
}
