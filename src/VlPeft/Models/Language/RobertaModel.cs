using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using LayerNorm = VlPeft.Nn.LayerNorm;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Language;

/// <summary>
/// HF RobertaModel (models.md §8) under <c>roberta.*</c>: embeddings (word, position from padding_idx + 1,
/// token type, LayerNorm), post-LN BERT layers with Houlsby adapter sites (after the attention-output dense and
/// after the FFN-output dense, before residual + LayerNorm: the routing paper's adapter places), and the pooler.
/// </summary>
public sealed class RobertaModel : nn.Module
{
    readonly RobertaEmbeddings embeddings;
    readonly RobertaEncoder encoder;
    readonly RobertaPooler pooler;

    public RobertaModel(RobertaConfig config, Device? device = null) : base("roberta")
    {
        Config = config;
        embeddings = new RobertaEmbeddings(config, device);
        encoder = new RobertaEncoder(config, device);
        pooler = new RobertaPooler(config.HiddenSize, device);
        RegisterComponents();
    }

    public RobertaConfig Config { get; }

    public Tensor WordEmbeddings(Tensor ids) => embeddings.Words(ids);

    /// <summary>
    /// inputs_embeds [B, T, H] (word embeddings, possibly with a prefix) + mask [B, T] → last hidden state. Positions
    /// count from padding_idx + 1 over the whole sequence (HF's path for inputs_embeds).
    /// </summary>
    public Tensor Encode(Tensor inputsEmbeds, Tensor attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        var h = embeddings.Complete(inputsEmbeds);
        var mask = Nn.Attention.Additive(attentionMask, h.dtype);
        foreach (var layer in encoder.Layers) h = layer.Run(h, mask);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>dense + tanh on position 0.</summary>
    public Tensor Pool(Tensor lastHiddenState) => pooler.call(lastHiddenState);
}

sealed class RobertaEmbeddings : nn.Module
{
    readonly Nn.Embedding word_embeddings, position_embeddings, token_type_embeddings;
    [TorchSharp.Utils.ComponentName(Name = "LayerNorm")] readonly LayerNorm norm;
    readonly int paddingIdx;

    public RobertaEmbeddings(RobertaConfig c, Device? device) : base("embeddings")
    {
        word_embeddings = Scaled(new Nn.Embedding(c.VocabSize, c.HiddenSize, device, tokenTable: true));
        position_embeddings = Scaled(new Nn.Embedding(c.MaxPositionEmbeddings, c.HiddenSize, device));
        token_type_embeddings = Scaled(new Nn.Embedding(c.TypeVocabSize, c.HiddenSize, device));
        norm = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        paddingIdx = c.PadTokenId;
        RegisterComponents();
    }

    // HF's init: N(0, 0.02).
    static Nn.Embedding Scaled(Nn.Embedding e)
    {
        if (e.weight.device_type != DeviceType.META) using (torch.no_grad()) e.weight.mul_(0.02);
        return e;
    }

    public Tensor Words(Tensor ids) => word_embeddings.call(ids);

    public Tensor Complete(Tensor inputsEmbeds)
    {
        using var scope = torch.NewDisposeScope();
        long length = inputsEmbeds.shape[1];
        var positions = torch.arange(paddingIdx + 1, paddingIdx + 1 + length, dtype: ScalarType.Int64, device: inputsEmbeds.device);
        var types = torch.zeros(length, dtype: ScalarType.Int64, device: inputsEmbeds.device);
        var h = inputsEmbeds + position_embeddings.call(positions).unsqueeze(0) + token_type_embeddings.call(types).unsqueeze(0);
        return norm.call(h).MoveToOuterDisposeScope();
    }
}

sealed class RobertaEncoder : nn.Module
{
    readonly ModuleList<RobertaLayer> layer;

    public RobertaEncoder(RobertaConfig c, Device? device) : base("encoder")
    {
        layer = new ModuleList<RobertaLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new RobertaLayer(c, device)).ToArray());
        RegisterComponents();
    }

    public IEnumerable<RobertaLayer> Layers => layer;
}

sealed class RobertaLayer : nn.Module
{
    readonly RobertaAttention attention;
    readonly DenseLayer intermediate;
    readonly RobertaOutput output;
    readonly Func<Tensor, Tensor> act;

    public RobertaLayer(RobertaConfig c, Device? device) : base("layer")
    {
        attention = new RobertaAttention(c, device);
        intermediate = new DenseLayer("intermediate", c.HiddenSize, c.IntermediateSize, device);
        output = new RobertaOutput("output", c.IntermediateSize, c, AdapterPlacement.AfterFeedForwardOutput, device);
        act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor mask)
    {
        var attended = attention.Run(h, mask);
        return output.Run(act(intermediate.call(attended)), attended);
    }
}

sealed class RobertaAttention : nn.Module
{
    readonly BertSelfAttention @self;
    readonly RobertaOutput output;

    public RobertaAttention(RobertaConfig c, Device? device) : base("attention")
    {
        @self = new BertSelfAttention("self", c.HiddenSize, c.NumAttentionHeads, bias: true, device);
        output = new RobertaOutput("output", c.HiddenSize, c, AdapterPlacement.AfterAttentionOutput, device);
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor mask) => output.Run(@self.Run(h, mask), h);
}

/// <summary>dense → adapter site → LayerNorm(· + residual): BertSelfOutput and BertOutput.</summary>
sealed class RobertaOutput : nn.Module
{
    readonly Linear dense;
    [TorchSharp.Utils.ComponentName(Name = "LayerNorm")] readonly LayerNorm norm;
    public readonly AdapterSite adapter;

    public RobertaOutput(string name, long input, RobertaConfig c, AdapterPlacement placement, Device? device) : base(name)
    {
        dense = new Linear(input, c.HiddenSize, device: device);
        norm = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        adapter = new AdapterSite(placement, c.HiddenSize);
        RegisterComponents();
    }

    public Tensor Run(Tensor x, Tensor residual) => norm.call(adapter.call(dense.call(x)) + residual);
}

sealed class RobertaPooler : nn.Module<Tensor, Tensor>
{
    readonly Linear dense;

    public RobertaPooler(long hidden, Device? device) : base("pooler")
    {
        dense = new Linear(hidden, hidden, device: device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor last) => torch.tanh(dense.call(last[.., 0]));
}
