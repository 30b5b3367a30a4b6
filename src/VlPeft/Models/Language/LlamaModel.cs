using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Language;

/// <summary>
/// LLaMA / Vicuna (HF LlamaForCausalLM): RMSNorm in fp32, rotate_half RoPE with θ = rope_theta,
/// SiLU-gated MLP, causal attention scaled by 1/√head_dim, optional grouped KV heads.
/// </summary>
public sealed class LlamaModel : LanguageModel
{
    readonly LlamaInner model;
    readonly Linear lm_head;
    readonly TextConfig config;

    /// <param name="privateFirstToken">
    /// LaVIN's modality token: position 0 attends to itself and no later position attends to it (it only feeds routers).
    /// </param>
    public LlamaModel(TextConfig c, Device? device = null, bool privateFirstToken = false) : base("language_model")
    {
        config = c;
        model = new LlamaInner(c, device, privateFirstToken);
        lm_head = new Linear(c.HiddenSize, c.VocabSize, hasBias: false, device: device);
        RegisterComponents();
    }

    public TextConfig Config => config;

    /// <summary>
    /// After adapters were folded into some projections (which gave them biases): every attention (or MLP)
    /// projection gets a bias if any has one, zero where it had none, as HF's attention_bias / mlp_bias
    /// require; returns the config that now describes the layers.
    /// </summary>
    public TextConfig UniformBiases()
    {
        bool Uniform(IEnumerable<Linear> layers)
        {
            var list = layers.ToList();
            if (list.All(l => l.bias is null)) return false;
            foreach (var l in list) l.EnsureBias();
            return true;
        }
        return config with
        {
            AttentionBias = Uniform(model.Layers.SelectMany(l => l.AttentionProjections)),
            MlpBias = Uniform(model.Layers.SelectMany(l => l.MlpProjections)),
        };
    }

    public override bool IsEncoderDecoder => false;
    public override long VocabSize => config.VocabSize;
    public override Tensor EmbedTokens(Tensor ids) => model.EmbedTokens(ids);

    public override Tensor CausalLogits(Tensor inputsEmbeds, Tensor attentionMask) => lm_head.call(model.Run(inputsEmbeds, attentionMask));

    /// <summary>Generation with a KV cache: each step runs only the tokens the cache does not hold yet.</summary>
    public override IncrementalDecoder StartDecoding(Tensor promptEmbeds, Tensor promptMask) => new CachedDecoder(this, promptEmbeds);

    /// <summary>
    /// Keeps the keys and values of the prompt and of the ids run so far. A call whose ids extend the last
    /// ones runs just the new tokens; a call that branches (beam search) cuts the cache back to the shared
    /// prefix first, so every call returns what a full re-run would.
    /// </summary>
    sealed class CachedDecoder : IncrementalDecoder
    {
        readonly LlamaModel lm;
        readonly LlamaKvCache cache;
        readonly long promptLength;
        readonly Tensor promptLogits;
        List<long> processed = new();
        Tensor? lastLogits;

        public CachedDecoder(LlamaModel lm, Tensor promptEmbeds)
        {
            this.lm = lm;
            cache = new LlamaKvCache(lm.config.NumHiddenLayers);
            promptLength = promptEmbeds.shape[1];
            using var scope = torch.NewDisposeScope();
            promptLogits = lm.lm_head.call(lm.model.RunCached(promptEmbeds, cache))[0, -1].DetachFromDisposeScope();
        }

        public override IReadOnlyList<long> StartIds => Array.Empty<long>();

        public override Tensor NextLogits(IReadOnlyList<long> ids)
        {
            int common = 0;
            while (common < processed.Count && common < ids.Count && processed[common] == ids[common]) common++;
            if (common == 0 && ids.Count == 0) return promptLogits.clone();
            if (common < processed.Count || (common == ids.Count && lastLogits is null))
            {
                // Branch: keep the shared prefix, but re-run at least its last token to get its logits.
                common = Math.Min(common, ids.Count - 1);
                cache.Truncate(promptLength + common);
                processed = processed.Take(common).ToList();
                lastLogits?.Dispose();
                lastLogits = null;
            }
            if (processed.Count < ids.Count)
            {
                using var scope = torch.NewDisposeScope();
                var fresh = ids.Skip(processed.Count).ToArray();
                var embeds = lm.EmbedTokens(torch.tensor(fresh).unsqueeze(0));
                var logits = lm.lm_head.call(lm.model.RunCached(embeds, cache))[0, -1];
                lastLogits?.Dispose();
                lastLogits = logits.DetachFromDisposeScope();
                processed = ids.ToList();
            }
            return lastLogits!.clone();
        }

        public override void Dispose()
        {
            cache.Dispose();
            promptLogits.Dispose();
            lastLogits?.Dispose();
        }
    }

    /// <summary>cos and sin tables [T, head_dim] of HF's rotary embedding (frequencies repeated for both halves).</summary>
    public static (Tensor Cos, Tensor Sin) Rotary(long length, long headDim, double theta, Device? device = null)
    {
        var invFreq = torch.pow(theta, -torch.arange(0, headDim, 2, dtype: ScalarType.Float32, device: device) / headDim);
        var freqs = torch.outer(torch.arange(length, dtype: ScalarType.Float32, device: device), invFreq);
        var emb = torch.cat(new[] { freqs, freqs }, -1);
        return (emb.cos(), emb.sin());
    }

    /// <summary>q·cos + rotate_half(q)·sin, rotate_half(x1, x2) = (−x2, x1) over the two halves.</summary>
    public static Tensor ApplyRotary(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        var rotated = torch.cat(new[] { -x[.., .., .., (int)half..], x[.., .., .., ..(int)half] }, -1);
        return x * cos.to(x.dtype) + rotated * sin.to(x.dtype);
    }
}

sealed class LlamaInner : nn.Module
{
    readonly Nn.Embedding embed_tokens;
    readonly ModuleList<LlamaDecoderLayer> layers;
    readonly RmsNorm norm;
    readonly TextConfig config;
    readonly bool privateFirstToken;

    public LlamaInner(TextConfig c, Device? device, bool privateFirstToken) : base("model")
    {
        config = c;
        this.privateFirstToken = privateFirstToken;
        embed_tokens = new Nn.Embedding(c.VocabSize, c.HiddenSize, device, tokenTable: true);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(c, device)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device);
        RegisterComponents();
    }

    public Tensor EmbedTokens(Tensor ids) => embed_tokens.call(ids);
    public IEnumerable<LlamaDecoderLayer> Layers => layers;

    /// <summary>
    /// Runs new positions [1, n, D] after those in <paramref name="cache"/> (generation: one sequence, no padding),
    /// appending their keys and values; returns the normed hidden states of the new positions.
    /// </summary>
    public Tensor RunCached(Tensor h, LlamaKvCache cache)
    {
        using var scope = torch.NewDisposeScope();
        long past = cache.Length, n = h.shape[1];
        // New position i (absolute past + i) sees every cached position and the new ones up to itself.
        var future = torch.ones(n, past + n, dtype: ScalarType.Bool, device: h.device).triu(past + 1);
        var mask = torch.zeros(n, past + n, dtype: h.dtype, device: h.device).masked_fill(HideFirstToken(future, past), Nn.Attention.MinValue(h.dtype));
        var (cos, sin) = LlamaModel.Rotary(past + n, config.HiddenSize / config.NumAttentionHeads, config.RopeTheta, h.device);
        cos = cos[(int)past..];
        sin = sin[(int)past..];
        int i = 0;
        foreach (var layer in layers) h = layer.Run(h, mask, cos, sin, cache, i++);
        return norm.call(h).MoveToOuterDisposeScope();
    }

    /// <summary>Adds key 0 to the hidden keys of every query at absolute position ≥ 1 (rows start at <paramref name="past"/>).</summary>
    Tensor HideFirstToken(Tensor hidden, long past)
    {
        if (!privateFirstToken) return hidden;
        var rows = torch.arange(past, past + hidden.shape[0], device: hidden.device).ge(1);
        var firstKey = torch.zeros(hidden.shape[1], dtype: ScalarType.Bool, device: hidden.device);
        firstKey[0] = true;
        return hidden.logical_or(rows.unsqueeze(1).logical_and(firstKey.unsqueeze(0)));
    }

    public Tensor Run(Tensor h, Tensor attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        long t = h.shape[1];
        var causal = torch.ones(t, t, dtype: ScalarType.Bool, device: h.device).tril().logical_not();
        var mask = Nn.Attention.Additive(attentionMask, h.dtype).masked_fill(HideFirstToken(causal, 0), Nn.Attention.MinValue(h.dtype));
        var (cos, sin) = LlamaModel.Rotary(t, config.HiddenSize / config.NumAttentionHeads, config.RopeTheta, h.device);
        foreach (var layer in layers) h = layer.Run(h, mask, cos, sin);
        return norm.call(h).MoveToOuterDisposeScope();
    }
}

sealed class LlamaDecoderLayer : nn.Module
{
    readonly RmsNorm input_layernorm, post_attention_layernorm;
    readonly LlamaAttention self_attn;
    readonly LlamaMlp mlp;
    public readonly AdapterSite adapter_before_attention, adapter_before_ffn;

    public LlamaDecoderLayer(TextConfig c, Device? device) : base("layer")
    {
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device);
        self_attn = new LlamaAttention(c, device);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device);
        mlp = new LlamaMlp(c, device);
        adapter_before_attention = new AdapterSite(AdapterPlacement.BeforeAttention, c.HiddenSize).FoldsInto(self_attn.InputProjections);
        adapter_before_ffn = new AdapterSite(AdapterPlacement.BeforeFeedForward, c.HiddenSize).FoldsInto(mlp.InputProjections);
        RegisterComponents();
    }

    public IEnumerable<Linear> AttentionProjections => self_attn.Projections;
    public IEnumerable<Linear> MlpProjections => mlp.Projections;

    public Tensor Run(Tensor h, Tensor mask, Tensor cos, Tensor sin, LlamaKvCache? cache = null, int index = 0)
    {
        h = h + self_attn.Run(adapter_before_attention.call(input_layernorm.call(h)), mask, cos, sin, cache, index);   // sites take the normed input
        return h + mlp.call(adapter_before_ffn.call(post_attention_layernorm.call(h)));
    }
}

sealed class LlamaAttention : nn.Module
{
    readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly int heads, kvHeads;

    public LlamaAttention(TextConfig c, Device? device) : base("self_attn")
    {
        heads = c.NumAttentionHeads;
        kvHeads = c.NumKeyValueHeads ?? c.NumAttentionHeads;
        int headDim = c.HiddenSize / heads;
        q_proj = new Linear(c.HiddenSize, heads * headDim, hasBias: c.AttentionBias, device: device);
        k_proj = new Linear(c.HiddenSize, kvHeads * headDim, hasBias: c.AttentionBias, device: device);
        v_proj = new Linear(c.HiddenSize, kvHeads * headDim, hasBias: c.AttentionBias, device: device);
        o_proj = new Linear(heads * headDim, c.HiddenSize, hasBias: c.AttentionBias, device: device);
        RegisterComponents();
    }

    /// <summary>The projections that read the attention input (what an adapter before attention folds into).</summary>
    public Linear[] InputProjections => new[] { q_proj, k_proj, v_proj };
    public Linear[] Projections => new[] { q_proj, k_proj, v_proj, o_proj };

    /// <param name="cache">Generation: keys/values of earlier positions, extended with these.</param>
    public Tensor Run(Tensor h, Tensor mask, Tensor cos, Tensor sin, LlamaKvCache? cache = null, int index = 0)
    {
        using var scope = torch.NewDisposeScope();
        var q = LlamaModel.ApplyRotary(Nn.Attention.SplitHeads(q_proj.call(h), heads), cos, sin);
        var k = LlamaModel.ApplyRotary(Nn.Attention.SplitHeads(k_proj.call(h), kvHeads), cos, sin);
        var v = Nn.Attention.SplitHeads(v_proj.call(h), kvHeads);
        if (cache != null) (k, v) = cache.Append(index, k, v);
        if (kvHeads != heads)
        {
            // SDPA here has no enable_gqa: repeat each KV head for its query group.
            k = k.repeat_interleave(heads / kvHeads, 1);
            v = v.repeat_interleave(heads / kvHeads, 1);
        }
        var ctx = Nn.Attention.Scaled(q, k, v, mask, 1 / Math.Sqrt(q.shape[^1]), 0, training);
        return o_proj.call(Nn.Attention.MergeHeads(ctx)).MoveToOuterDisposeScope();
    }
}

sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear gate_proj, up_proj, down_proj;
    readonly Func<Tensor, Tensor> act;

    public LlamaMlp(TextConfig c, Device? device) : base("mlp")
    {
        gate_proj = new Linear(c.HiddenSize, c.IntermediateSize, hasBias: c.MlpBias, device: device);
        up_proj = new Linear(c.HiddenSize, c.IntermediateSize, hasBias: c.MlpBias, device: device);
        down_proj = new Linear(c.IntermediateSize, c.HiddenSize, hasBias: c.MlpBias, device: device);
        act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public Linear[] InputProjections => new[] { gate_proj, up_proj };
    public Linear[] Projections => new[] { gate_proj, up_proj, down_proj };

    public override Tensor forward(Tensor x) => down_proj.call(act(gate_proj.call(x)) * up_proj.call(x));
}

/// <summary>Per layer, the keys (after rotary) and values [1, kv_heads, T, head_dim] of the positions run so far.</summary>
public sealed class LlamaKvCache : IDisposable
{
    readonly (Tensor K, Tensor V)?[] layers;

    public LlamaKvCache(int layerCount) => layers = new (Tensor, Tensor)?[layerCount];

    public long Length => layers[0]?.K.shape[2] ?? 0;

    /// <summary>Appends a layer's new keys and values; returns all of them (owned by the cache, valid until the next change).</summary>
    public (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        var entry = layers[layer] is { } old ? (torch.cat(new[] { old.K, k }, 2), torch.cat(new[] { old.V, v }, 2)) : (k.alias(), v.alias());
        Replace(layer, (entry.Item1.DetachFromDisposeScope(), entry.Item2.DetachFromDisposeScope()));
        return layers[layer]!.Value;
    }

    /// <summary>Keeps the first <paramref name="length"/> positions.</summary>
    public void Truncate(long length)
    {
        for (int i = 0; i < layers.Length; i++)
            if (layers[i] is { } e && e.K.shape[2] > length)
                Replace(i, (e.K[.., .., ..(int)length].contiguous().DetachFromDisposeScope(), e.V[.., .., ..(int)length].contiguous().DetachFromDisposeScope()));
    }

    void Replace(int layer, (Tensor K, Tensor V) entry)
    {
        if (layers[layer] is { } old)
        {
            old.K.Dispose();
            old.V.Dispose();
        }
        layers[layer] = entry;
    }

    public void Dispose()
    {
        foreach (var e in layers)
            if (e is { } entry)
            {
                entry.K.Dispose();
                entry.V.Dispose();
            }
    }
}
