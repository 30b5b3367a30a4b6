using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Language;

/// <summary>
/// T5 v1.1 / Flan-T5 (HF T5ForConditionalGeneration): RMS norm without mean or bias, no 1/√d
/// scaling in attention, relative position bias computed in block 0 and reused, gated FFN with
/// the config's dense_act_fn, untied lm_head without d^−0.5 rescale (rescaled only when tied).
/// </summary>
public sealed class T5Model : LanguageModel
{
    readonly Nn.Embedding shared;
    readonly T5Stack encoder, decoder;
    readonly Linear lm_head;
    readonly TextConfig config;

    public T5Model(TextConfig c, Device? device = null) : base("language_model")
    {
        config = c;
        shared = new Nn.Embedding(c.VocabSize, c.DModel, device, tokenTable: true);
        encoder = new T5Stack(c, isDecoder: false, c.NumLayers, device);
        decoder = new T5Stack(c, isDecoder: true, c.NumDecoderLayers ?? c.NumLayers, device);
        lm_head = new Linear(c.DModel, c.VocabSize, hasBias: false, device: device);
        RegisterComponents();
    }

    public override bool IsEncoderDecoder => true;
    public override long VocabSize => config.VocabSize;
    public override Tensor EmbedTokens(Tensor ids) => shared.call(ids);

    public Tensor Encode(Tensor embeds, Tensor mask) => encoder.Run(embeds, mask, null, null);

    public Tensor Seq2SeqLogits(Tensor encoderEmbeds, Tensor encoderMask, Tensor decoderInputIds, Tensor? decoderMask)
    {
        using var scope = torch.NewDisposeScope();
        var memory = Encode(encoderEmbeds, encoderMask);
        return Decode(memory, encoderMask, decoderInputIds, decoderMask).MoveToOuterDisposeScope();
    }

    /// <summary>Decoder logits given an encoder output (reused across candidates and generation steps).</summary>
    public Tensor Decode(Tensor memory, Tensor encoderMask, Tensor decoderInputIds, Tensor? decoderMask)
    {
        var h = decoder.Run(shared.call(decoderInputIds), decoderMask ?? torch.ones_like(decoderInputIds), memory, encoderMask);
        if (config.TieWordEmbeddings) h = h * Math.Pow(config.DModel, -0.5);
        return lm_head.call(h);
    }

    public override Tensor Logits(Tensor inputsEmbeds, Tensor attentionMask, Tensor? labels, Tensor? decoderInputIds = null, Tensor? decoderMask = null)
    {
        var decoderIds = decoderInputIds ?? (labels is null ? null : ShiftRight(labels))
            ?? throw new BadInputException("T5 needs decoder_input_ids or labels");
        return Seq2SeqLogits(inputsEmbeds, attentionMask, decoderIds, decoderMask);
    }

    public override (Tensor Logits, Tensor Targets) AlignWithLabels(Tensor logits, Tensor labels) => (logits, labels);

    public override IncrementalDecoder StartDecoding(Tensor promptEmbeds, Tensor promptMask) =>
        new T5Decoder(this, Encode(promptEmbeds, promptMask), promptMask, config.DecoderStartTokenId);

    /// <summary>Generation keeps the encoder output and re-runs only the decoder each step.</summary>
    sealed class T5Decoder : IncrementalDecoder
    {
        readonly T5Model model;
        readonly Tensor memory, mask;

        public T5Decoder(T5Model model, Tensor memory, Tensor mask, long start)
        {
            this.model = model;
            this.memory = memory;
            this.mask = mask;
            StartIds = new[] { start };
        }

        public override IReadOnlyList<long> StartIds { get; }

        public override Tensor NextLogits(IReadOnlyList<long> ids) =>
            model.Decode(memory, mask, torch.tensor(ids.ToArray()).unsqueeze(0), null)[0, -1];
    }

    /// <summary>HF _shift_right: prepend decoder_start_token_id and replace −100 with pad.</summary>
    public Tensor ShiftRight(Tensor labels)
    {
        var start = torch.full(labels.shape[0], 1, config.DecoderStartTokenId, dtype: labels.dtype, device: labels.device);
        var shifted = torch.cat(new[] { start, labels[.., ..^1] }, 1);
        return shifted.masked_fill(shifted.eq(-100), config.PadTokenId);
    }

    /// <summary>
    /// The relative-position bucket of T5 (HF _relative_position_bucket) for δ = memory − query position.
    /// </summary>
    public static Tensor RelativePositionBucket(Tensor relativePosition, bool bidirectional, int numBuckets, int maxDistance)
    {
        var buckets = torch.zeros_like(relativePosition);
        var rel = relativePosition;
        if (bidirectional)
        {
            numBuckets /= 2;
            buckets = buckets + rel.gt(0).to(ScalarType.Int64) * numBuckets;
            rel = rel.abs();
        }
        else
        {
            rel = -torch.minimum(rel, torch.zeros_like(rel));
        }
        int maxExact = numBuckets / 2;
        var isSmall = rel.lt(maxExact);
        var large = maxExact + (torch.log(rel.to(ScalarType.Float32) / maxExact) / Math.Log((double)maxDistance / maxExact) * (numBuckets - maxExact)).to(ScalarType.Int64);
        large = torch.minimum(large, torch.full_like(large, numBuckets - 1));
        return buckets + torch.where(isSmall, rel, large);
    }
}

sealed class T5Stack : nn.Module
{
    readonly ModuleList<T5Block> block;
    readonly RmsNorm final_layer_norm;
    readonly bool isDecoder;
    readonly double dropout;

    public T5Stack(TextConfig c, bool isDecoder, int layers, Device? device) : base(isDecoder ? "decoder" : "encoder")
    {
        this.isDecoder = isDecoder;
        block = new ModuleList<T5Block>(Enumerable.Range(0, layers).Select(i => new T5Block(c, isDecoder, hasRelativeBias: i == 0, device)).ToArray());
        final_layer_norm = new RmsNorm(c.DModel, c.LayerNormEpsilon, device);
        dropout = c.DropoutRate;
        RegisterComponents();
    }

    public Tensor Run(Tensor embeds, Tensor mask, Tensor? memory, Tensor? memoryMask)
    {
        using var scope = torch.NewDisposeScope();
        var h = F.dropout(embeds, dropout, training);
        long t = h.shape[1];
        var additive = Nn.Attention.Additive(mask, h.dtype);                    // [B, 1, 1, T]
        if (isDecoder)
        {
            var causal = torch.ones(t, t, dtype: ScalarType.Bool, device: h.device).tril().logical_not();
            additive = additive.masked_fill(causal, Nn.Attention.MinValue(h.dtype));
        }
        var crossMask = memoryMask is null ? null : Nn.Attention.Additive(memoryMask, h.dtype);
        var positionBias = block[0].PositionBias(t, t, h.device) + additive;     // computed once, reused by every block
        foreach (var b in block) h = b.Run(h, positionBias, memory, crossMask);
        return F.dropout(final_layer_norm.call(h), dropout, training).MoveToOuterDisposeScope();
    }
}

sealed class T5Block : nn.Module
{
    // Only the list is a field: sublayers held in fields too would be registered twice.
    readonly ModuleList<nn.Module> layer;

    public T5Block(TextConfig c, bool isDecoder, bool hasRelativeBias, Device? device) : base("block")
    {
        var self = new T5LayerAttention(c, "SelfAttention", isDecoder, hasRelativeBias, device);
        var ff = new T5LayerFF(c, device);
        layer = isDecoder
            ? new ModuleList<nn.Module>(self, new T5LayerAttention(c, "EncDecAttention", isDecoder, false, device), ff)
            : new ModuleList<nn.Module>(self, ff);
        RegisterComponents();
    }

    T5LayerAttention self => (T5LayerAttention)layer[0];
    T5LayerAttention? cross => layer.Count == 3 ? (T5LayerAttention)layer[1] : null;
    T5LayerFF ff => (T5LayerFF)layer[layer.Count - 1];

    public Tensor PositionBias(long q, long k, Device device) => self.Attention.PositionBias(q, k, device);

    public Tensor Run(Tensor h, Tensor positionBias, Tensor? memory, Tensor? crossMask)
    {
        h = self.Run(h, null, positionBias);
        if (cross != null) h = cross.Run(h, memory, crossMask ?? torch.zeros(1));
        return ff.call(h);
    }
}

/// <summary>layer.N for attention: <c>SelfAttention</c> or <c>EncDecAttention</c>, <c>layer_norm</c>, pre-norm residual.</summary>
sealed class T5LayerAttention : nn.Module
{
    readonly T5Attention attention;
    readonly RmsNorm layer_norm;
    readonly double dropout;
    public readonly AdapterSite adapter_before_attention;

    public T5LayerAttention(TextConfig c, string attentionName, bool isDecoder, bool hasRelativeBias, Device? device) : base("layer")
    {
        attention = new T5Attention(c, isDecoder, hasRelativeBias, device);
        layer_norm = new RmsNorm(c.DModel, c.LayerNormEpsilon, device);
        dropout = c.DropoutRate;
        adapter_before_attention = new AdapterSite(AdapterPlacement.BeforeAttention, c.DModel);
        RegisterComponents();
        // The field is generic; HF names the module after its role.
        register_module("attention", null!);
        register_module(attentionName, attention);
    }

    public T5Attention Attention => attention;

    public Tensor Run(Tensor h, Tensor? memory, Tensor bias)
    {
        var normed = adapter_before_attention.call(layer_norm.call(h));   // the site takes the normed (query) input
        return h + F.dropout(attention.Run(normed, memory ?? normed, bias), dropout, training);
    }
}

sealed class T5Attention : nn.Module
{
    readonly Linear q, k, v, o;
    readonly Nn.Embedding? relative_attention_bias;
    readonly int heads, buckets, maxDistance;
    readonly bool bidirectional;
    readonly double dropout;

    public T5Attention(TextConfig c, bool isDecoder, bool hasRelativeBias, Device? device) : base("attention")
    {
        int inner = c.NumHeads * c.DKv;
        q = new Linear(c.DModel, inner, hasBias: false, device: device);
        k = new Linear(c.DModel, inner, hasBias: false, device: device);
        v = new Linear(c.DModel, inner, hasBias: false, device: device);
        o = new Linear(inner, c.DModel, hasBias: false, device: device);
        if (hasRelativeBias) relative_attention_bias = new Nn.Embedding(c.RelativeAttentionNumBuckets, c.NumHeads, device);
        heads = c.NumHeads;
        buckets = c.RelativeAttentionNumBuckets;
        maxDistance = c.RelativeAttentionMaxDistance;
        bidirectional = !isDecoder;
        dropout = c.DropoutRate;
        RegisterComponents();
    }

    /// <summary>[1, heads, q, k] bias from the bucketed relative positions (block 0 only).</summary>
    public Tensor PositionBias(long queryLength, long keyLength, Device device)
    {
        var context = torch.arange(queryLength, dtype: ScalarType.Int64, device: device).unsqueeze(1);
        var memory = torch.arange(keyLength, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        var bucket = T5Model.RelativePositionBucket(memory - context, bidirectional, buckets, maxDistance);
        return relative_attention_bias!.call(bucket).permute(2, 0, 1).unsqueeze(0);
    }

    public Tensor Run(Tensor h, Tensor memory, Tensor bias)
    {
        using var scope = torch.NewDisposeScope();
        var qh = Nn.Attention.SplitHeads(q.call(h), heads);
        var kh = Nn.Attention.SplitHeads(k.call(memory), heads);
        var vh = Nn.Attention.SplitHeads(v.call(memory), heads);
        // T5 does not scale scores by 1/√d_kv.
        var ctx = Nn.Attention.Scaled(qh, kh, vh, bias.to(qh.dtype), 1.0, dropout, training);
        return o.call(Nn.Attention.MergeHeads(ctx)).MoveToOuterDisposeScope();
    }
}

sealed class T5LayerFF : nn.Module<Tensor, Tensor>
{
    readonly T5DenseGated DenseReluDense;
    readonly RmsNorm layer_norm;
    readonly double dropout;
    public readonly AdapterSite adapter_before_ffn;

    public T5LayerFF(TextConfig c, Device? device) : base("layer")
    {
        DenseReluDense = new T5DenseGated(c, device);
        layer_norm = new RmsNorm(c.DModel, c.LayerNormEpsilon, device);
        dropout = c.DropoutRate;
        adapter_before_ffn = new AdapterSite(AdapterPlacement.BeforeFeedForward, c.DModel);
        RegisterComponents();
    }

    public override Tensor forward(Tensor h) =>
        h + F.dropout(DenseReluDense.call(adapter_before_ffn.call(layer_norm.call(h))), dropout, training);
}

/// <summary>wo(dropout(act(wi_0·x) ⊙ wi_1·x)); the non-gated v1.0 form uses a single <c>wi</c>.</summary>
sealed class T5DenseGated : nn.Module<Tensor, Tensor>
{
    readonly Linear? wi_0, wi_1, wi;
    readonly Linear wo;
    readonly Func<Tensor, Tensor> act;
    readonly double dropout;

    public T5DenseGated(TextConfig c, Device? device) : base("DenseReluDense")
    {
        if (c.T5IsGated)
        {
            wi_0 = new Linear(c.DModel, c.DFf, hasBias: false, device: device);
            wi_1 = new Linear(c.DModel, c.DFf, hasBias: false, device: device);
        }
        else wi = new Linear(c.DModel, c.DFf, hasBias: false, device: device);
        wo = new Linear(c.DFf, c.DModel, hasBias: false, device: device);
        act = Activations.Get(c.T5Activation);
        dropout = c.DropoutRate;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var hidden = wi is null ? act(wi_0!.call(x)) * wi_1!.call(x) : act(wi.call(x));
        return wo.call(F.dropout(hidden, dropout, training));
    }
}
