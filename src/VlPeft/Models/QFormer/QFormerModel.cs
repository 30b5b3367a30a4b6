using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using LayerNorm = VlPeft.Nn.LayerNorm;

namespace VlPeft.Models.QFormer;

/// <summary>
/// The BLIP-2 / InstructBLIP Q-Former (post-LN BERT blocks). BLIP-2: queries only, normed by
/// <c>qformer.layernorm</c>. InstructBLIP: word/position embeddings for the instruction, the
/// embedding LayerNorm over [queries; text], bidirectional self-attention over both,
/// cross-attention to the image on layers where index % cross_attention_frequency == 0 for the
/// query positions only, and separate query and text FFNs. HF: Blip2QFormerModel / InstructBlipQFormerModel.
/// </summary>
public sealed class QFormerModel : nn.Module<QFormerInputs, Tensor>
{
    readonly LayerNorm? layernorm;                // BLIP-2
    readonly QFormerEmbeddings? embeddings;       // InstructBLIP
    readonly QFormerEncoder encoder;
    readonly double dropout;

    public QFormerModel(QFormerConfig config, bool withTextInput, Device? device = null) : base("qformer")
    {
        if (withTextInput) embeddings = new QFormerEmbeddings(config, device);
        else layernorm = new LayerNorm(config.HiddenSize, config.LayerNormEps, device: device);
        encoder = new QFormerEncoder(config, withTextInput, device);
        dropout = config.HiddenDropoutProb;
        RegisterComponents();
    }

    /// <summary>Last hidden state [B, Q + L, H]; the first Q positions are the query outputs.</summary>
    public override Tensor forward(QFormerInputs input)
    {
        using var scope = torch.NewDisposeScope();
        long queries = input.QueryEmbeds.shape[1];
        Tensor h;
        Tensor? mask = null;
        if (embeddings != null && input.InputIds is not null)
        {
            h = embeddings.Embed(input.InputIds, input.QueryEmbeds);
            var textMask = input.AttentionMask ?? torch.ones_like(input.InputIds);
            var queryMask = torch.ones(input.InputIds.shape[0], queries, dtype: textMask.dtype, device: textMask.device);
            mask = Nn.Attention.Additive(torch.cat(new[] { queryMask, textMask }, 1), h.dtype);
        }
        else if (embeddings != null)
            h = embeddings.Embed(null, input.QueryEmbeds);
        else
            h = F.dropout(layernorm!.call(input.QueryEmbeds), dropout, training);
        return encoder.Run(h, mask, input.ImageEmbeds, queries).MoveToOuterDisposeScope();
    }
}

/// <summary>Inputs of the Q-Former: expanded query tokens, the image memory, and (InstructBLIP) the instruction.</summary>
public sealed record QFormerInputs(Tensor QueryEmbeds, Tensor ImageEmbeds, Tensor? InputIds = null, Tensor? AttentionMask = null);

sealed class QFormerEmbeddings : nn.Module
{
    readonly Nn.Embedding word_embeddings, position_embeddings;
    readonly LayerNorm layernorm;
    readonly double dropout;

    public QFormerEmbeddings(QFormerConfig c, Device? device) : base("embeddings")
    {
        word_embeddings = new Nn.Embedding(c.VocabSize, c.HiddenSize, device, tokenTable: true);
        position_embeddings = new Nn.Embedding(c.MaxPositionEmbeddings, c.HiddenSize, device);
        layernorm = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        dropout = c.HiddenDropoutProb;
        RegisterComponents();
    }

    /// <summary>LayerNorm(concat[queries; word + position embeddings]); text positions start at 0, queries get none.</summary>
    public Tensor Embed(Tensor? ids, Tensor queries)
    {
        var h = queries;
        if (ids is not null)
        {
            var positions = torch.arange(ids.shape[1], dtype: ScalarType.Int64, device: ids.device).unsqueeze(0);
            var text = word_embeddings.call(ids) + position_embeddings.call(positions);
            h = torch.cat(new[] { queries.to(text.dtype), text }, 1);
        }
        return F.dropout(layernorm.call(h), dropout, training);
    }
}

sealed class QFormerEncoder : nn.Module
{
    readonly ModuleList<QFormerLayer> layer;

    public QFormerEncoder(QFormerConfig c, bool withText, Device? device) : base("encoder")
    {
        layer = new ModuleList<QFormerLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new QFormerLayer(c, i, withText, device)).ToArray());
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor? mask, Tensor image, long queries)
    {
        foreach (var l in layer) h = l.Run(h, mask, image, queries);
        return h;
    }
}

sealed class QFormerLayer : nn.Module
{
    readonly QFormerAttention attention;
    readonly QFormerAttention? crossattention;
    readonly QFormerIntermediate? intermediate;
    readonly QFormerOutput? output;
    readonly QFormerIntermediate intermediate_query;
    readonly QFormerOutput output_query;
    // Houlsby's post-LN placement: inside the self-attention and FFN outputs, after the dense, before residual + LayerNorm.
    public readonly AdapterSite adapter_after_attention, adapter_after_ffn;

    public QFormerLayer(QFormerConfig c, int index, bool withText, Device? device) : base("layer")
    {
        attention = new QFormerAttention(c, c.HiddenSize, device);
        if (c.HasCrossAttention(index)) crossattention = new QFormerAttention(c, c.EncoderHiddenSize, device);
        if (withText)
        {
            intermediate = new QFormerIntermediate(c, device);
            output = new QFormerOutput(c, device);
        }
        intermediate_query = new QFormerIntermediate(c, device);
        output_query = new QFormerOutput(c, device);
        adapter_after_attention = new AdapterSite(AdapterPlacement.AfterAttentionOutput, c.HiddenSize);
        adapter_after_ffn = new AdapterSite(AdapterPlacement.AfterFeedForwardOutput, c.HiddenSize);
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor? mask, Tensor image, long queries)
    {
        using var scope = torch.NewDisposeScope();
        var attended = attention.Run(h, h, mask, adapter_after_attention);            // [B, Q + L, H]
        var query = attended[.., ..(int)queries];
        if (crossattention != null) query = crossattention.Run(query, image, null);   // queries attend to the image
        var result = output_query.Run(intermediate_query.call(query), query, adapter_after_ffn);
        if (attended.shape[1] > queries)
        {
            var text = attended[.., (int)queries..];
            result = torch.cat(new[] { result, output!.Run(intermediate!.call(text), text, adapter_after_ffn) }, 1);
        }
        return result.MoveToOuterDisposeScope();
    }
}

/// <summary>BERT attention: <c>attention</c> (query/key/value) then <c>output</c> (dense + LayerNorm with the residual).</summary>
sealed class QFormerAttention : nn.Module
{
    readonly QFormerSelfAttention attention;
    readonly QFormerOutput output;

    public QFormerAttention(QFormerConfig c, int keyValueSize, Device? device) : base("attention")
    {
        attention = new QFormerSelfAttention(c, keyValueSize, device);
        output = new QFormerOutput(c, device, c.HiddenSize);
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor memory, Tensor? mask, AdapterSite? site = null) => output.Run(attention.Run(h, memory, mask), h, site);
}

sealed class QFormerSelfAttention : nn.Module
{
    readonly Nn.Linear query, key, value;
    readonly int heads;
    readonly double dropout;

    public QFormerSelfAttention(QFormerConfig c, int keyValueSize, Device? device) : base("attention")
    {
        query = new Nn.Linear(c.HiddenSize, c.HiddenSize, device: device);
        key = new Nn.Linear(keyValueSize, c.HiddenSize, device: device);
        value = new Nn.Linear(keyValueSize, c.HiddenSize, device: device);
        heads = c.NumAttentionHeads;
        dropout = c.AttentionProbsDropoutProb;
        RegisterComponents();
    }

    public Tensor Run(Tensor h, Tensor memory, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        memory = memory.to(h.dtype);
        var q = Nn.Attention.SplitHeads(query.call(h), heads);
        var k = Nn.Attention.SplitHeads(key.call(memory), heads);
        var v = Nn.Attention.SplitHeads(value.call(memory), heads);
        var ctx = Nn.Attention.Scaled(q, k, v, mask, 1 / Math.Sqrt(q.shape[^1]), dropout, training);
        return Nn.Attention.MergeHeads(ctx).MoveToOuterDisposeScope();
    }
}

sealed class QFormerIntermediate : nn.Module<Tensor, Tensor>
{
    readonly Nn.Linear dense;
    readonly Func<Tensor, Tensor> act;

    public QFormerIntermediate(QFormerConfig c, Device? device) : base("intermediate")
    {
        dense = new Nn.Linear(c.HiddenSize, c.IntermediateSize, device: device);
        act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor h) => act(dense.call(h));
}

/// <summary>LayerNorm(site(dropout(dense(x))) + residual); <c>LayerNorm</c> keeps BERT's capitalised name.</summary>
sealed class QFormerOutput : nn.Module
{
    readonly Nn.Linear dense;
    readonly LayerNorm LayerNorm;
    readonly double dropout;

    public QFormerOutput(QFormerConfig c, Device? device, int? inputSize = null) : base("output")
    {
        dense = new Nn.Linear(inputSize ?? c.IntermediateSize, c.HiddenSize, device: device);
        LayerNorm = new LayerNorm(c.HiddenSize, c.LayerNormEps, device: device);
        dropout = c.HiddenDropoutProb;
        RegisterComponents();
    }

    public Tensor Run(Tensor x, Tensor residual, AdapterSite? site = null)
    {
        var y = F.dropout(dense.call(x), dropout, training);
        return LayerNorm.call((site is null ? y : site.call(y)) + residual);
    }
}
