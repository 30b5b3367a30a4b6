using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Models.Loading;

/// <summary>
/// Meta's original LLaMA checkpoint layout (params.json + consolidated.*.pth; LaVIN's base weights) against HF's
/// (models.md §5): tensor names, and the row permutation of wq/wk that turns Meta's interleaved-pair rotary
/// embedding into HF's rotate_half one. Permuting is what HF's converter does; the inverse goes back.
/// </summary>
public static class MetaLlamaFormat
{
    static readonly (Regex Meta, string Hf)[] names =
    {
        (new(@"^tok_embeddings\.weight$"), "model.embed_tokens.weight"),
        (new(@"^layers\.(\d+)\.attention\.wq\.weight$"), "model.layers.$1.self_attn.q_proj.weight"),
        (new(@"^layers\.(\d+)\.attention\.wk\.weight$"), "model.layers.$1.self_attn.k_proj.weight"),
        (new(@"^layers\.(\d+)\.attention\.wv\.weight$"), "model.layers.$1.self_attn.v_proj.weight"),
        (new(@"^layers\.(\d+)\.attention\.wo\.weight$"), "model.layers.$1.self_attn.o_proj.weight"),
        (new(@"^layers\.(\d+)\.feed_forward\.w1\.weight$"), "model.layers.$1.mlp.gate_proj.weight"),
        (new(@"^layers\.(\d+)\.feed_forward\.w3\.weight$"), "model.layers.$1.mlp.up_proj.weight"),
        (new(@"^layers\.(\d+)\.feed_forward\.w2\.weight$"), "model.layers.$1.mlp.down_proj.weight"),
        (new(@"^layers\.(\d+)\.attention_norm\.weight$"), "model.layers.$1.input_layernorm.weight"),
        (new(@"^layers\.(\d+)\.ffn_norm\.weight$"), "model.layers.$1.post_attention_layernorm.weight"),
        (new(@"^norm\.weight$"), "model.norm.weight"),
        (new(@"^output\.weight$"), "lm_head.weight"),
    };

    /// <summary>The HF name of a Meta tensor name, or null for tensors HF does not have (rope.freqs).</summary>
    public static string? HfName(string metaName)
    {
        foreach (var (meta, hf) in names)
            if (meta.IsMatch(metaName)) return meta.Replace(metaName, hf);
        return null;
    }

    /// <summary>Whether the tensor's rows must be permuted (wq, wk).</summary>
    public static bool IsRotated(string metaName) => Regex.IsMatch(metaName, @"^layers\.\d+\.attention\.w[qk]\.weight$");

    /// <summary>Meta → HF rows of wq/wk [heads·d_head, dim]: per head, view [d_head/2, 2] and transpose to [2, d_head/2].</summary>
    public static Tensor ToHf(Tensor weight, long heads)
    {
        long rows = weight.shape[0], dim = weight.shape[1];
        return weight.view(heads, rows / heads / 2, 2, dim).transpose(1, 2).reshape(rows, dim);
    }

    /// <summary>HF → Meta, the inverse of <see cref="ToHf"/>.</summary>
    public static Tensor ToMeta(Tensor weight, long heads)
    {
        long rows = weight.shape[0], dim = weight.shape[1];
        return weight.view(heads, 2, rows / heads / 2, dim).transpose(1, 2).reshape(rows, dim);
    }
}
