using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using LayerNorm = VlPeft.Nn.LayerNorm;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Vision;

/// <summary>
/// The CLIP vision tower with HF CLIPVisionModel names (models.md §9.1): patch conv without bias, a 1-D
/// class embedding, position embeddings as an Embedding table, <c>pre_layrnorm</c> (HF's spelling), pre-LN
/// blocks with separate q/k/v/out projections, quick-gelu for the OpenAI checkpoints. Returns every hidden
/// state: [0] after pre_layrnorm, [i] after block i (LaVIN reads the [CLS] of every 4th). post_layernorm is
/// built (the checkpoint has it) but LaVIN does not apply it.
/// </summary>
public sealed class ClipVisionModel : nn.Module<Tensor, IReadOnlyList<Tensor>>
{
    readonly ClipVisionEmbeddings embeddings;
    readonly LayerNorm pre_layrnorm;
    readonly ClipEncoder encoder;
    readonly LayerNorm post_layernorm;

    public ClipVisionModel(VisionConfig config, Device? device = null) : base("vision_model")
    {
        embeddings = new ClipVisionEmbeddings(config, device);
        pre_layrnorm = new LayerNorm(config.HiddenSize, config.LayerNormEps, device: device);
        encoder = new ClipEncoder(config, device);
        post_layernorm = new LayerNorm(config.HiddenSize, config.LayerNormEps, device: device);
        RegisterComponents();
    }

    /// <summary>pixel_values [B, 3, S, S] → hidden states [B, 1 + patches, H], one per block plus the embeddings.</summary>
    public override IReadOnlyList<Tensor> forward(Tensor pixelValues)
    {
        var states = new List<Tensor>();
        var h = pre_layrnorm.call(embeddings.call(pixelValues));
        states.Add(h);
        foreach (var layer in encoder.Layers)
        {
            h = layer.call(h);
            states.Add(h);
        }
        return states;
    }

    public Tensor PostLayerNorm(Tensor pooled) => post_layernorm.call(pooled);
}

/// <summary>The blocks, under HF's <c>encoder.layers.N</c> path.</summary>
sealed class ClipEncoder : nn.Module
{
    readonly ModuleList<ClipEncoderLayer> layers;

    public ClipEncoder(VisionConfig c, Device? device) : base("encoder")
    {
        layers = new ModuleList<ClipEncoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new ClipEncoderLayer(c, device)).ToArray());
        RegisterComponents();
    }

    public IEnumerable<ClipEncoderLayer> Layers => layers;
}

sealed class ClipVisionEmbeddings : nn.Module<Tensor, Tensor>
{
    readonly Parameter class_embedding;
    readonly Conv2dPatch patch_embedding;
    readonly Nn.Embedding position_embedding;

    public ClipVisionEmbeddings(VisionConfig c, Device? device) : base("embeddings")
    {
        class_embedding = new Parameter(Multimodal.BlipForConditionalGeneration.InitNormal(torch.empty(c.HiddenSize, device: device)));
        patch_embedding = new Conv2dPatch(c.NumChannels, c.HiddenSize, c.PatchSize, hasBias: false, device);
        position_embedding = new Nn.Embedding(c.NumPatches + 1, c.HiddenSize, device);
        if (position_embedding.weight.device_type != DeviceType.META)
            using (torch.no_grad()) position_embedding.weight.mul_(0.02);   // HF's init scale, not N(0, 1)
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = torch.NewDisposeScope();
        var patches = patch_embedding.call(pixels).flatten(2).transpose(1, 2);                      // [B, P, H]
        var cls = class_embedding.view(1, 1, -1).expand(patches.shape[0], 1, -1).to(patches.dtype); // [B, 1, H]
        var h = torch.cat(new[] { cls, patches }, 1) + position_embedding.weight.to(patches.dtype).unsqueeze(0);
        return h.MoveToOuterDisposeScope();
    }
}

sealed class ClipEncoderLayer : nn.Module<Tensor, Tensor>
{
    readonly LayerNorm layer_norm1, layer_norm2;
    readonly ClipAttention self_attn;
    readonly VisionMlp mlp;
    public readonly AdapterSite adapter_before_attention, adapter_before_ffn;

    public ClipEncoderLayer(VisionConfig c, Device? device) : base("layer")
    {
        layer_norm1 = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        self_attn = new ClipAttention(c, device);
        layer_norm2 = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        mlp = new VisionMlp(c, device);
        adapter_before_attention = new AdapterSite(AdapterPlacement.BeforeAttention, c.HiddenSize).FoldsInto(self_attn.InputProjections);
        adapter_before_ffn = new AdapterSite(AdapterPlacement.BeforeFeedForward, c.HiddenSize).FoldsInto(mlp.fc1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor h)
    {
        h = h + self_attn.call(adapter_before_attention.call(layer_norm1.call(h)));   // sites take the normed input (LaVIN: after ln_1)
        return h + mlp.call(adapter_before_ffn.call(layer_norm2.call(h)));
    }
}

sealed class ClipAttention : nn.Module<Tensor, Tensor>
{
    readonly Linear q_proj, k_proj, v_proj, out_proj;
    readonly int heads;
    readonly double dropout;

    public ClipAttention(VisionConfig c, Device? device) : base("self_attn")
    {
        q_proj = new Linear(c.HiddenSize, c.HiddenSize, device: device);
        k_proj = new Linear(c.HiddenSize, c.HiddenSize, device: device);
        v_proj = new Linear(c.HiddenSize, c.HiddenSize, device: device);
        out_proj = new Linear(c.HiddenSize, c.HiddenSize, device: device);
        heads = c.NumAttentionHeads;
        dropout = c.AttentionDropout;
        RegisterComponents();
    }

    public Linear[] InputProjections => new[] { q_proj, k_proj, v_proj };

    public override Tensor forward(Tensor h)
    {
        using var scope = torch.NewDisposeScope();
        var q = Nn.Attention.SplitHeads(q_proj.call(h), heads);
        var k = Nn.Attention.SplitHeads(k_proj.call(h), heads);
        var v = Nn.Attention.SplitHeads(v_proj.call(h), heads);
        var ctx = Nn.Attention.Scaled(q, k, v, null, 1 / Math.Sqrt(q.shape[^1]), dropout, training);
        return out_proj.call(Nn.Attention.MergeHeads(ctx)).MoveToOuterDisposeScope();
    }
}
