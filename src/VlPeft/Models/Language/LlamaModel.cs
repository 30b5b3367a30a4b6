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

    public LlamaModel(TextConfig c, Device? device = null) : base("language_model")
    {
        config = c;
        model = new LlamaInner(c, device);
        lm_head = new Linear(c.HiddenSize, c.VocabSize, hasBias: false, device: device);
        RegisterComponents();
    }

    public override bool IsEncoderDecoder => false;
    public override long VocabSize => config.VocabSize;
    public override Tensor EmbedTokens(Tensor ids) => model.EmbedTokens(ids);

    public override Tensor CausalLogits(Tensor inputsEmbeds, Tensor attentionMask) => lm_head.call(model.Run(inputsEmbeds, attentionMask));

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

    public LlamaInner(TextConfig c, Device? device) : base("model")
    {
        config = c;
        embed_tokens = new Nn.Embedding(c.VocabSize, c.HiddenSize, device);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(c, device)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device);
        RegisterComponents();
    }

    public Tensor EmbedTokens(Tensor ids) => embed_tokens.call(ids);

    public Tensor Run(Tensor h, Tensor attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        long t = h.shape[1];
        var causal = torch.ones(t, t, dtype: ScalarType.Bool, device: h.device).tril().logical_not();
        var mask = Nn.Attention.Additive(attentionMask, h.dtype).masked_fill(causal, Nn.Attention.MinValue(h.dtype));
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
        adapter_before_attention = new AdapterSite(AdapterPlacement.BeforeAttention, c.HiddenSize);
        adapter_before_ffn = new AdapterSite(AdapterPlacement.BeforeFeedForward, c.HiddenSize);
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor mask, Tensor cos, Tensor sin)
    {
        h = h + self_attn.Run(adapter_before_attention.call(input_layernorm.call(h)), mask, cos, sin);   // sites take the normed input
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
        q_proj = new Linear(c.HiddenSize, heads * headDim, hasBias: false, device: device);
        k_proj = new Linear(c.HiddenSize, kvHeads * headDim, hasBias: false, device: device);
        v_proj = new Linear(c.HiddenSize, kvHeads * headDim, hasBias: false, device: device);
        o_proj = new Linear(heads * headDim, c.HiddenSize, hasBias: false, device: device);
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor mask, Tensor cos, Tensor sin)
    {
        using var scope = torch.NewDisposeScope();
        var q = LlamaModel.ApplyRotary(Nn.Attention.SplitHeads(q_proj.call(h), heads), cos, sin);
        var k = LlamaModel.ApplyRotary(Nn.Attention.SplitHeads(k_proj.call(h), kvHeads), cos, sin);
        var v = Nn.Attention.SplitHeads(v_proj.call(h), kvHeads);
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
        gate_proj = new Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: device);
        up_proj = new Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: device);
        down_proj = new Linear(c.IntermediateSize, c.HiddenSize, hasBias: false, device: device);
        act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => down_proj.call(act(gate_proj.call(x)) * up_proj.call(x));
}
