using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using LayerNorm = VlPeft.Nn.LayerNorm;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Language;

/// <summary>
/// OPT (HF OPTForCausalLM), the BLIP-2 LM: learned positions with an offset of 2 counted over
/// non-padding tokens, pre-LN blocks, ReLU FFN, lm_head tied to embed_tokens. The
/// word_embed_proj_dim ≠ hidden_size variant (OPT-350m) is not supported.
/// </summary>
public sealed class OptModel : LanguageModel
{
    readonly OptInner model;
    readonly TextConfig config;

    public OptModel(TextConfig c, Device? device = null) : base("language_model")
    {
        if (c.WordEmbedProjDim != c.HiddenSize)
            throw new BadInputException($"OPT with word_embed_proj_dim ({c.WordEmbedProjDim}) ≠ hidden_size ({c.HiddenSize}) is not supported");
        config = c;
        model = new OptInner(c, device);
        RegisterComponents();
    }

    public override bool IsEncoderDecoder => false;
    public override long VocabSize => config.VocabSize;
    public override Tensor EmbedTokens(Tensor ids) => model.EmbedTokens(ids);

    // lm_head is tied to embed_tokens (checkpoints may omit it).
    public override Tensor CausalLogits(Tensor inputsEmbeds, Tensor attentionMask) =>
        model.TiedHead(model.Run(inputsEmbeds, attentionMask));
}

sealed class OptInner : nn.Module
{
    readonly OptDecoder decoder;

    public OptInner(TextConfig c, Device? device) : base("model")
    {
        decoder = new OptDecoder(c, device);
        RegisterComponents();
    }

    public Tensor EmbedTokens(Tensor ids) => decoder.EmbedTokens(ids);
    public Tensor TiedHead(Tensor hidden) => decoder.TiedHead(hidden);
    public Tensor Run(Tensor h, Tensor mask) => decoder.Run(h, mask);
}

sealed class OptDecoder : nn.Module
{
    readonly Nn.Embedding embed_tokens, embed_positions;
    readonly ModuleList<OptDecoderLayer> layers;
    readonly LayerNorm final_layer_norm;
    readonly double dropout;

    public OptDecoder(TextConfig c, Device? device) : base("decoder")
    {
        embed_tokens = new Nn.Embedding(c.VocabSize, c.WordEmbedProjDim, device, tokenTable: true);
        embed_positions = new Nn.Embedding(c.MaxPositionEmbeddings + 2, c.HiddenSize, device);
        layers = new ModuleList<OptDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new OptDecoderLayer(c, device)).ToArray());
        final_layer_norm = new LayerNorm(c.HiddenSize, 1e-5, device: device);
        dropout = c.Dropout;
        RegisterComponents();
    }

    public Tensor EmbedTokens(Tensor ids) => embed_tokens.call(ids);
    public Tensor TiedHead(Tensor hidden) => embed_tokens.Project(hidden);

    public Tensor Run(Tensor h, Tensor attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        long t = h.shape[1];
        // positions = cumsum(mask)·mask − 1, then the learned table's offset of 2.
        var positions = (attentionMask.cumsum(1) * attentionMask - 1).to(ScalarType.Int64) + 2;
        h = F.dropout(h + embed_positions.call(positions).to(h.dtype), dropout, training);
        var causal = torch.ones(t, t, dtype: ScalarType.Bool, device: h.device).tril().logical_not();
        var mask = Nn.Attention.Additive(attentionMask, h.dtype).masked_fill(causal, Nn.Attention.MinValue(h.dtype));
        foreach (var layer in layers) h = layer.Run(h, mask);
        return final_layer_norm.call(h).MoveToOuterDisposeScope();
    }
}

sealed class OptDecoderLayer : nn.Module
{
    readonly OptAttention self_attn;
    readonly LayerNorm self_attn_layer_norm, final_layer_norm;
    readonly Linear fc1, fc2;
    readonly Func<Tensor, Tensor> act;
    readonly double dropout;
    public readonly AdapterSite adapter_before_attention, adapter_before_ffn;

    public OptDecoderLayer(TextConfig c, Device? device) : base("layer")
    {
        self_attn = new OptAttention(c, device);
        self_attn_layer_norm = new LayerNorm(c.HiddenSize, 1e-5, device: device);
        fc1 = new Linear(c.HiddenSize, c.FfnDim, c.EnableBias, device: device);
        fc2 = new Linear(c.FfnDim, c.HiddenSize, c.EnableBias, device: device);
        final_layer_norm = new LayerNorm(c.HiddenSize, 1e-5, device: device);
        act = Activations.Get(c.ActivationFunction);
        dropout = c.Dropout;
        adapter_before_attention = new AdapterSite(AdapterPlacement.BeforeAttention, c.HiddenSize);
        adapter_before_ffn = new AdapterSite(AdapterPlacement.BeforeFeedForward, c.HiddenSize);
        if (c.EnableBias)   // OPTConfig has no per-layer bias switch: folding needs the biases to exist already
        {
            adapter_before_attention.FoldsInto(self_attn.InputProjections);
            adapter_before_ffn.FoldsInto(fc1);
        }
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor mask)
    {
        h = h + F.dropout(self_attn.Run(adapter_before_attention.call(self_attn_layer_norm.call(h)), mask), dropout, training);   // sites take the normed input
        var ffn = fc2.call(act(fc1.call(adapter_before_ffn.call(final_layer_norm.call(h)))));
        return h + F.dropout(ffn, dropout, training);
    }
}

sealed class OptAttention : nn.Module
{
    readonly Linear q_proj, k_proj, v_proj, out_proj;
    readonly int heads;

    public Linear[] InputProjections { get; }
    readonly double dropout;

    public OptAttention(TextConfig c, Device? device) : base("self_attn")
    {
        q_proj = new Linear(c.HiddenSize, c.HiddenSize, c.EnableBias, device: device);
        k_proj = new Linear(c.HiddenSize, c.HiddenSize, c.EnableBias, device: device);
        v_proj = new Linear(c.HiddenSize, c.HiddenSize, c.EnableBias, device: device);
        out_proj = new Linear(c.HiddenSize, c.HiddenSize, c.EnableBias, device: device);
        InputProjections = new[] { q_proj, k_proj, v_proj };
        heads = c.NumAttentionHeads;
        dropout = c.AttentionDropout;
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        var q = Nn.Attention.SplitHeads(q_proj.call(h), heads);
        var k = Nn.Attention.SplitHeads(k_proj.call(h), heads);
        var v = Nn.Attention.SplitHeads(v_proj.call(h), heads);
        var ctx = Nn.Attention.Scaled(q, k, v, mask, 1 / Math.Sqrt(q.shape[^1]), dropout, training);
        return out_proj.call(Nn.Attention.MergeHeads(ctx)).MoveToOuterDisposeScope();
    }
}
