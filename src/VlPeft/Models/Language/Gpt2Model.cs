using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using LayerNorm = VlPeft.Nn.LayerNorm;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Language;

/// <summary>
/// HF GPT2Model under <c>transformer.*</c> (models.md §7): wte, wpe, pre-LN blocks whose Conv1D layers keep GPT-2's
/// [in, out] storage (fan_in_fan_out), the fused <c>attn.c_attn</c> = q | k | v, gelu_new, ln_f; the LM head is
/// tied to wte. Each block has one adapter site applied after the attention output and again after the MLP output,
/// before the residual adds: the routing paper's post_module placement, one adapter's weights used twice.
/// </summary>
public sealed class Gpt2Model : nn.Module
{
    readonly Nn.Embedding wte, wpe;
    readonly ModuleList<Gpt2Block> h;
    readonly LayerNorm ln_f;

    public Gpt2Model(Gpt2Config config, Device? device = null) : base("transformer")
    {
        Config = config;
        wte = new Nn.Embedding(config.VocabSize, config.NEmbd, device, tokenTable: true);
        wpe = new Nn.Embedding(config.NPositions, config.NEmbd, device);
        if (wte.weight.device_type != DeviceType.META)
            using (torch.no_grad()) { wte.weight.mul_(0.02); wpe.weight.mul_(0.01); }   // HF's init scales
        h = new ModuleList<Gpt2Block>(Enumerable.Range(0, config.NLayer).Select(_ => new Gpt2Block(config, device)).ToArray());
        ln_f = new LayerNorm(config.NEmbd, config.LayerNormEpsilon, device: device);
        RegisterComponents();
    }

    public Gpt2Config Config { get; }

    public Tensor EmbedTokens(Tensor ids) => wte.call(ids);

    /// <summary>inputs_embeds [B, T, D] + mask [B, T] (1 = token) → logits [B, T, V] through the tied head.</summary>
    public Tensor Logits(Tensor inputsEmbeds, Tensor attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        long length = inputsEmbeds.shape[1];
        if (length > Config.NPositions) throw new BadInputException($"the sequence has {length} positions; GPT-2 has {Config.NPositions}");
        var x = inputsEmbeds + wpe.call(torch.arange(length, dtype: ScalarType.Int64, device: inputsEmbeds.device)).unsqueeze(0).to(inputsEmbeds.dtype);
        // Causal and padding masks in one additive mask [B, 1, T, T].
        var causal = torch.ones(length, length, dtype: ScalarType.Bool, device: x.device).tril();
        var allowed = causal.unsqueeze(0).logical_and(attentionMask.to(ScalarType.Bool).unsqueeze(1)).unsqueeze(1);
        var mask = torch.zeros(allowed.shape, dtype: x.dtype, device: x.device).masked_fill(allowed.logical_not(), Nn.Attention.MinValue(x.dtype));
        foreach (var block in h) x = block.Run(x, mask);
        var hidden = ln_f.call(x);
        return wte.Project(hidden).MoveToOuterDisposeScope();
    }
}

sealed class Gpt2Block : nn.Module
{
    readonly LayerNorm ln_1, ln_2;
    readonly Gpt2Attention attn;
    readonly Gpt2Mlp mlp;
    public readonly AdapterSite adapter;

    public Gpt2Block(Gpt2Config c, Device? device) : base("block")
    {
        ln_1 = new LayerNorm(c.NEmbd, c.LayerNormEpsilon, device: device);
        attn = new Gpt2Attention(c, device);
        ln_2 = new LayerNorm(c.NEmbd, c.LayerNormEpsilon, device: device);
        mlp = new Gpt2Mlp(c, device);
        adapter = new AdapterSite(AdapterPlacement.AfterAttentionAndFeedForwardOutput, c.NEmbd);
        RegisterComponents();
    }

    public Tensor Run(Tensor x, Tensor mask)
    {
        x = x + adapter.call(attn.Run(ln_1.call(x), mask));
        return x + adapter.call(mlp.call(ln_2.call(x)));
    }
}

sealed class Gpt2Attention : nn.Module
{
    readonly Linear c_attn, c_proj;
    readonly int heads;

    public Gpt2Attention(Gpt2Config c, Device? device) : base("attn")
    {
        c_attn = Conv1D(c.NEmbd, 3 * c.NEmbd, device);
        c_proj = Conv1D(c.NEmbd, c.NEmbd, device);
        heads = c.NHead;
        RegisterComponents();
    }

    /// <summary>GPT-2's Conv1D: weight [in, out] ~ N(0, 0.02), zero bias.</summary>
    internal static Linear Conv1D(long input, long output, Device? device)
    {
        var layer = new Linear(input, output, fanInFanOut: true, device: device);
        if (layer.weight.device_type != DeviceType.META)
            using (torch.no_grad()) { layer.weight.normal_(0, 0.02); layer.bias!.zero_(); }
        return layer;
    }

    public Tensor Run(Tensor x, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        var qkv = c_attn.call(x).chunk(3, -1);
        var q = Nn.Attention.SplitHeads(qkv[0], heads);
        var k = Nn.Attention.SplitHeads(qkv[1], heads);
        var v = Nn.Attention.SplitHeads(qkv[2], heads);
        var context = Nn.Attention.Scaled(q, k, v, mask, 1 / Math.Sqrt(q.shape[^1]), 0, training);
        return c_proj.call(Nn.Attention.MergeHeads(context)).MoveToOuterDisposeScope();
    }
}

sealed class Gpt2Mlp : nn.Module<Tensor, Tensor>
{
    readonly Linear c_fc, c_proj;
    readonly Func<Tensor, Tensor> act;

    public Gpt2Mlp(Gpt2Config c, Device? device) : base("mlp")
    {
        c_fc = Gpt2Attention.Conv1D(c.NEmbd, c.Inner, device);
        c_proj = Gpt2Attention.Conv1D(c.Inner, c.NEmbd, device);
        act = Activations.Get(c.ActivationFunction);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => c_proj.call(act(c_fc.call(x)));
}
