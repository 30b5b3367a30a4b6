using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using LayerNorm = VlPeft.Nn.LayerNorm;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Vision;

/// <summary>
/// The BLIP-2 / InstructBLIP vision tower (EVA ViT, pre-LN): patch conv with bias, class and
/// position embeddings as bare parameters, fused qkv, and post_layernorm over all tokens (CLS too),
/// whose output is the Q-Former's cross-attention memory. HF: Blip2VisionModel.
/// </summary>
public sealed class BlipVisionModel : nn.Module<Tensor, Tensor>
{
    readonly BlipVisionEmbeddings embeddings;
    readonly BlipVisionEncoder encoder;
    readonly LayerNorm post_layernorm;

    public BlipVisionModel(VisionConfig config, Device? device = null) : base("vision_model")
    {
        embeddings = new BlipVisionEmbeddings(config, device);
        encoder = new BlipVisionEncoder(config, device);
        post_layernorm = new LayerNorm(config.HiddenSize, config.LayerNormEps, device: device);
        RegisterComponents();
    }

    /// <summary>pixel_values [B, 3, S, S] → last_hidden_state [B, 1 + patches, H].</summary>
    public override Tensor forward(Tensor pixelValues) =>
        post_layernorm.call(encoder.call(embeddings.call(pixelValues)));
}

sealed class BlipVisionEmbeddings : nn.Module<Tensor, Tensor>
{
    readonly Parameter class_embedding;
    readonly Conv2dPatch patch_embedding;
    readonly Parameter position_embedding;

    public BlipVisionEmbeddings(VisionConfig c, Device? device) : base("embeddings")
    {
        // HF initializes both with a (truncated) normal; zeros would leave patches without position information.
        class_embedding = new Parameter(Multimodal.BlipForConditionalGeneration.InitNormal(torch.empty(1, 1, c.HiddenSize, device: device)));
        patch_embedding = new Conv2dPatch(c.NumChannels, c.HiddenSize, c.PatchSize, hasBias: true, device);
        position_embedding = new Parameter(Multimodal.BlipForConditionalGeneration.InitNormal(torch.empty(1, c.NumPatches + 1, c.HiddenSize, device: device)));
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = torch.NewDisposeScope();
        var patches = patch_embedding.call(pixels).flatten(2).transpose(1, 2);      // [B, P, H]
        var cls = class_embedding.expand(patches.shape[0], 1, -1).to(patches.dtype); // [B, 1, H]
        var h = torch.cat(new[] { cls, patches }, 1) + position_embedding.to(patches.dtype);
        return h.MoveToOuterDisposeScope();
    }
}

sealed class BlipVisionEncoder : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<BlipVisionLayer> layers;

    public BlipVisionEncoder(VisionConfig c, Device? device) : base("encoder")
    {
        layers = new ModuleList<BlipVisionLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new BlipVisionLayer(c, device)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor h)
    {
        foreach (var layer in layers) h = layer.call(h);
        return h;
    }
}

sealed class BlipVisionLayer : nn.Module<Tensor, Tensor>
{
    readonly LayerNorm layer_norm1, layer_norm2;
    readonly BlipVisionAttention self_attn;
    readonly VisionMlp mlp;
    public readonly AdapterSite adapter_before_attention, adapter_before_ffn;

    public BlipVisionLayer(VisionConfig c, Device? device) : base("layer")
    {
        layer_norm1 = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        self_attn = new BlipVisionAttention(c, device);
        layer_norm2 = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        mlp = new VisionMlp(c, device);
        adapter_before_attention = new AdapterSite(AdapterPlacement.BeforeAttention, c.HiddenSize);
        // The fused qkv's k bias is not stored (HF keeps q_bias and v_bias only), so only the FFN site can fold.
        adapter_before_ffn = new AdapterSite(AdapterPlacement.BeforeFeedForward, c.HiddenSize).FoldsInto(mlp.fc1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor h)
    {
        h = h + self_attn.call(adapter_before_attention.call(layer_norm1.call(h)));   // sites take the normed input
        return h + mlp.call(adapter_before_ffn.call(layer_norm2.call(h)));
    }
}

sealed class BlipVisionAttention : nn.Module<Tensor, Tensor>
{
    readonly Linear qkv, projection;
    readonly int heads;
    readonly double dropout;

    public BlipVisionAttention(VisionConfig c, Device? device) : base("self_attn")
    {
        // HF builds qkv.bias = concat(q_bias, zeros, v_bias); the checkpoint holds the concatenation.
        qkv = new Linear(c.HiddenSize, 3 * c.HiddenSize, hasBias: c.QkvBias, device: device);
        projection = new Linear(c.HiddenSize, c.HiddenSize, device: device);
        heads = c.NumAttentionHeads;
        dropout = c.AttentionDropout;
        RegisterComponents();
    }

    public override Tensor forward(Tensor h)
    {
        using var scope = torch.NewDisposeScope();
        long b = h.shape[0], t = h.shape[1], d = h.shape[2] / heads;
        var qkvOut = qkv.call(h).view(b, t, 3, heads, d).permute(2, 0, 3, 1, 4); // [3, B, heads, T, d]
        var ctx = Nn.Attention.Scaled(qkvOut[0], qkvOut[1], qkvOut[2], null, 1 / Math.Sqrt(d), dropout, training);
        return projection.call(Nn.Attention.MergeHeads(ctx)).MoveToOuterDisposeScope();
    }
}
