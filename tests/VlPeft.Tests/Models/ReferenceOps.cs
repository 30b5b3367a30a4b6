using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Tests.Models;

/// <summary>
/// Raw-tensor reference computations written from the model descriptions (models.md), reading
/// parameters by their HF names; they share no code with the modules under test.
/// </summary>
sealed class ReferenceOps
{
    readonly Dictionary<string, Tensor> p;

    public ReferenceOps(nn.Module model) => p = model.named_parameters().ToDictionary(t => t.name, t => (Tensor)t.parameter.detach());

    public Tensor P(string name) => p.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException(name);
    public bool Has(string name) => p.ContainsKey(name);

    public Tensor Lin(Tensor x, string prefix) =>
        Has(prefix + ".bias") ? x.matmul(P(prefix + ".weight").t()) + P(prefix + ".bias") : x.matmul(P(prefix + ".weight").t());

    public Tensor LN(Tensor x, string prefix, double eps)
    {
        var mean = x.mean(new long[] { -1 }, keepdim: true);
        var variance = (x - mean).square().mean(new long[] { -1 }, keepdim: true);
        var y = (x - mean) / (variance + eps).sqrt() * P(prefix + ".weight");
        return Has(prefix + ".bias") ? y + P(prefix + ".bias") : y;
    }

    /// <summary>RMS norm as T5/LLaMA define it: computed in fp32 (whatever the input dtype), cast back, times w.</summary>
    public Tensor Rms(Tensor x, string prefix, double eps)
    {
        var h = x.to(ScalarType.Float32);
        var y = h / (h.square().mean(new long[] { -1 }, keepdim: true) + eps).sqrt();
        return P(prefix + ".weight") * y.to(x.dtype);
    }

    /// <summary>
    /// LLaMA logits of input embeddings h [B, T, D] under an additive mask [T, T] (models.md §5), with RoPE
    /// written by hand: pair (i, i + d/2) rotated by angle pos·θ^(−2i/d).
    /// </summary>
    public Tensor LlamaLogits(Tensor h, Tensor mask, VlPeft.Models.Configs.TextConfig t)
    {
        long len = h.shape[1], heads = t.NumAttentionHeads, d = t.HiddenSize / heads;
        Tensor Rope(Tensor x)
        {
            var y = x.clone();
            for (int pos = 0; pos < len; pos++)
                for (int i = 0; i < d / 2; i++)
                {
                    double angle = pos * Math.Pow(t.RopeTheta, -2.0 * i / d);
                    var a = x[.., .., pos, i];
                    var b = x[.., .., pos, i + d / 2];
                    y[.., .., pos, i] = a * Math.Cos(angle) - b * Math.Sin(angle);
                    y[.., .., pos, i + d / 2] = b * Math.Cos(angle) + a * Math.Sin(angle);
                }
            return y;
        }
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            string l = $"language_model.model.layers.{i}.";
            var x = Rms(h, l + "input_layernorm", t.RmsNormEps);
            var ctx = Attend(Rope(Heads(Lin(x, l + "self_attn.q_proj"), heads)), Rope(Heads(Lin(x, l + "self_attn.k_proj"), heads)),
                Heads(Lin(x, l + "self_attn.v_proj"), heads), 1 / Math.Sqrt(d), mask);
            h = h + Lin(Merge(ctx), l + "self_attn.o_proj");
            x = Rms(h, l + "post_attention_layernorm", t.RmsNormEps);
            var silu = Lin(x, l + "mlp.gate_proj");
            h = h + Lin(silu * silu.sigmoid() * Lin(x, l + "mlp.up_proj"), l + "mlp.down_proj");
        }
        return Lin(Rms(h, "language_model.model.norm", t.RmsNormEps), "language_model.lm_head");
    }

    /// <summary>softmax(q·kᵀ·scale + mask)·v over [B, H, T, d].</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, double scale, Tensor? mask = null)
    {
        var scores = q.matmul(k.transpose(-1, -2)) * scale;
        if (mask is not null) scores = scores + mask;
        return scores.softmax(-1).matmul(v);
    }

    public static Tensor Heads(Tensor x, long heads) => x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2);
    public static Tensor Merge(Tensor x) => x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1);

    public static Tensor Gelu(Tensor x) => 0.5 * x * (1 + torch.erf(x / Math.Sqrt(2)));

    /// <summary>[B, T] 1/0 mask → additive [B, 1, 1, T] with a large negative for padding.</summary>
    public static Tensor PadMask(Tensor mask) => ((1 - mask.to(ScalarType.Float64)) * -1e9).unsqueeze(1).unsqueeze(2);

    public static Tensor Causal(long t) => torch.ones(t, t, dtype: ScalarType.Float64).triu(1) * -1e9;

    /// <summary>T5's bucket for one relative position, written as scalar code from the formula.</summary>
    public static long Bucket(long delta, bool bidirectional, int numBuckets, int maxDistance)
    {
        long bucket = 0;
        long n = numBuckets;
        long rel;
        if (bidirectional)
        {
            n /= 2;
            if (delta > 0) bucket += n;
            rel = Math.Abs(delta);
        }
        else rel = Math.Max(-delta, 0);
        long maxExact = n / 2;
        if (rel < maxExact) return bucket + rel;
        long large = maxExact + (long)(Math.Log((double)rel / maxExact) / Math.Log((double)maxDistance / maxExact) * (n - maxExact));
        return bucket + Math.Min(large, n - 1);
    }
}
