using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using LayerNorm = VlPeft.Nn.LayerNorm;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Vision;

/// <summary>
/// HF ViTModel (google/vit-base-patch16-224-in21k layout, models.md §10): a [CLS] token and learned position
/// embeddings, pre-LN blocks named like BERT's (<c>attention.attention.{query,key,value}</c>,
/// <c>layernorm_before/after</c>), a final <c>layernorm</c>, and the pooler (dense + tanh on [CLS]) whose output
/// is the routing paper's visual feature x_v.
/// </summary>
public sealed class VitModel : nn.Module<Tensor, (Tensor LastHiddenState, Tensor Pooled)>
{
    readonly VitEmbeddings embeddings;
    readonly VitEncoder encoder;
    readonly LayerNorm layernorm;
    readonly VitPooler pooler;

    public VitModel(VisionConfig config, string name = "vit", Device? device = null) : base(name)
    {
        embeddings = new VitEmbeddings(config, device);
        encoder = new VitEncoder(config, device);
        layernorm = new LayerNorm(config.HiddenSize, config.LayerNormEps, device: device);
        pooler = new VitPooler(config.HiddenSize, device);
        RegisterComponents();
    }

    /// <summary>pixel_values [B, 3, S, S] → last_hidden_state [B, 1 + patches, H] and pooler_output [B, H].</summary>
    public override (Tensor LastHiddenState, Tensor Pooled) forward(Tensor pixelValues)
    {
        using var scope = torch.NewDisposeScope();
        var h = embeddings.call(pixelValues);
        foreach (var layer in encoder.Layers) h = layer.call(h);
        var last = layernorm.call(h);
        var pooled = pooler.call(last);
        return (last.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }
}

sealed class VitEmbeddings : nn.Module<Tensor, Tensor>
{
    readonly Parameter cls_token, position_embeddings;
    readonly VitPatchEmbeddings patch_embeddings;

    public VitEmbeddings(VisionConfig c, Device? device) : base("embeddings")
    {
        // HF ViT: trunc_normal(0.02) for both; N(0, 0.02) is close enough for a model built from scratch.
        cls_token = new Parameter(Multimodal.BlipForConditionalGeneration.InitNormal(torch.empty(1, 1, c.HiddenSize, device: device)));
        position_embeddings = new Parameter(Multimodal.BlipForConditionalGeneration.InitNormal(torch.empty(1, c.NumPatches + 1, c.HiddenSize, device: device)));
        patch_embeddings = new VitPatchEmbeddings(c, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = torch.NewDisposeScope();
        var patches = patch_embeddings.call(pixels);                                                   // [B, P, H]
        var cls = cls_token.to(patches.dtype).expand(patches.shape[0], 1, -1);
        return (torch.cat(new[] { cls, patches }, 1) + position_embeddings.to(patches.dtype)).MoveToOuterDisposeScope();
    }
}

sealed class VitPatchEmbeddings : nn.Module<Tensor, Tensor>
{
    readonly Conv2dPatch projection;

    public VitPatchEmbeddings(VisionConfig c, Device? device) : base("patch_embeddings")
    {
        projection = new Conv2dPatch(c.NumChannels, c.HiddenSize, c.PatchSize, hasBias: true, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels) => projection.call(pixels).flatten(2).transpose(1, 2);
}

sealed class VitEncoder : nn.Module
{
    readonly ModuleList<VitLayer> layer;

    public VitEncoder(VisionConfig c, Device? device) : base("encoder")
    {
        layer = new ModuleList<VitLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new VitLayer(c, device)).ToArray());
        RegisterComponents();
    }

    public IEnumerable<VitLayer> Layers => layer;
}

sealed class VitLayer : nn.Module<Tensor, Tensor>
{
    readonly LayerNorm layernorm_before, layernorm_after;
    readonly VitAttention attention;
    readonly DenseLayer intermediate, output;
    readonly Func<Tensor, Tensor> act;

    public VitLayer(VisionConfig c, Device? device) : base("layer")
    {
        layernorm_before = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        attention = new VitAttention(c, device);
        layernorm_after = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        intermediate = new DenseLayer("intermediate", c.HiddenSize, c.IntermediateSize, device);
        output = new DenseLayer("output", c.IntermediateSize, c.HiddenSize, device);
        act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor h)
    {
        h = h + attention.call(layernorm_before.call(h));
        return h + output.call(act(intermediate.call(layernorm_after.call(h))));
    }
}

/// <summary><c>attention.attention</c> (query, key, value) and <c>attention.output.dense</c>.</summary>
sealed class VitAttention : nn.Module<Tensor, Tensor>
{
    readonly BertSelfAttention attention;
    readonly DenseLayer output;

    public VitAttention(VisionConfig c, Device? device) : base("attention")
    {
        attention = new BertSelfAttention("attention", c.HiddenSize, c.NumAttentionHeads, c.QkvBias, device);
        output = new DenseLayer("output", c.HiddenSize, c.HiddenSize, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor h) => output.call(attention.Run(h, null));
}

sealed class VitPooler : nn.Module<Tensor, Tensor>
{
    readonly Linear dense;

    public VitPooler(long hidden, Device? device) : base("pooler")
    {
        dense = new Linear(hidden, hidden, device: device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor last) => torch.tanh(dense.call(last[.., 0]));
}
