using TorchSharp;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Models.Loading;

/// <summary>Keys that did not line up when a checkpoint was loaded.</summary>
public sealed record LoadReport(int Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<string> Ignored);

/// <summary>
/// Copies a safetensors checkpoint into a module name for name (HF names are our parameter
/// paths), tensor by tensor so a 7B model never exists twice, converting dtypes on the way.
/// Tied aliases and non-persistent buffers that HF files may carry are ignored; anything else that
/// does not match is reported, and in strict mode refused. Weights saved quantized by bitsandbytes
/// (<see cref="BitsAndBytesWeights"/>) stay quantized in their linear layer or embedding table.
/// </summary>
public static class CheckpointLoader
{
    /// <param name="quantizeTo">For layers and tables built with <see cref="Nn.Linear.DeferWeightAllocation"/>: module name → the
    /// format its weight is quantized to as it is read (null: kept as read).</param>
    public static LoadReport Load(nn.Module model, string path, bool strict = true, IEnumerable<string>? skipPrefixes = null,
        IEnumerable<string>? tiedAliases = null, Func<string, string?>? quantizeTo = null)
    {
        using var checkpoint = TensorCheckpoint.Open(path);
        // bitsandbytes-quantized weights first: they replace the module's weight parameter by a quantized one.
        var quantized = BitsAndBytesWeights.Find(checkpoint.Entries.Select(e => e.Name).ToList());
        var consumed = new HashSet<string>();
        var holders = model.named_modules().Where(m => m.module is Nn.Quantization.IQuantizableWeight)
            .ToDictionary(m => m.name, m => (Nn.Quantization.IQuantizableWeight)m.module);
        foreach (var (module, keys) in quantized)
        {
            if (!holders.TryGetValue(module, out var holder)) continue;    // reported as unexpected below
            holder.weight.requires_grad = false;                            // a quantized weight is frozen
            holder.UseQuantized(BitsAndBytesWeights.Read(checkpoint, module, keys));
            consumed.UnionWith(keys);
        }
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var skip = (skipPrefixes ?? Array.Empty<string>()).ToList();
        var aliases = (tiedAliases ?? Array.Empty<string>()).ToHashSet();
        var loaded = new HashSet<string>();
        var unexpected = new List<string>();
        var ignored = new List<string>();
        using var _ = torch.no_grad();
        foreach (var entry in checkpoint.Entries)
        {
            string key = entry.Name;
            if (consumed.Contains(key))
            {
                if (key.EndsWith(".weight", StringComparison.Ordinal)) loaded.Add(key);
                continue;
            }
            if (skip.Any(p => key.StartsWith(p, StringComparison.Ordinal)) || aliases.Contains(key) || IsBufferKey(key))
            {
                ignored.Add(key);
                continue;
            }
            if (!parameters.TryGetValue(key, out var target))
            {
                unexpected.Add(key);
                continue;
            }
            if (!entry.Shape.SequenceEqual(target.shape))
                throw new BadInputException($"checkpoint tensor '{key}' has shape [{string.Join(", ", entry.Shape)}] but the model expects [{string.Join(", ", target.shape)}]",
                    checkpoint.FileOf(key));
            using (var value = checkpoint.ReadTensor(key))
            {
                if (key.EndsWith(".weight", StringComparison.Ordinal) && holders.TryGetValue(key[..^7], out var holder) && holder.WeightPending)
                    holder.LoadWeight(value, quantizeTo?.Invoke(key[..^7]));   // one tensor at a time: read, quantized or kept, next
                else
                    target.copy_(value);
            }
            // A large read buffer is gone: its pages go back now (the CLI's malloc thresholds would keep them), so a load
            // peaks at about the model plus one tensor.
            if (entry.ByteLength >= 64L << 20) Runtime.NativeAllocator.ReleaseFreeMemory();
            loaded.Add(key);
        }
        var pending = holders.Where(l => l.Value.WeightPending && !skip.Any(p => (l.Key + ".weight").StartsWith(p, StringComparison.Ordinal))).Select(l => l.Key + ".weight").ToList();
        if (pending.Count > 0 && !strict)
            throw new BadInputException($"checkpoint lacks {pending.Count} weight(s) that have no other source: {string.Join(", ", pending.Take(5))}", checkpoint.Path);
        Runtime.NativeAllocator.ReleaseFreeMemory();   // nor the smaller read buffers, now that all are gone
        var missing = parameters.Keys.Where(k => !loaded.Contains(k) && !skip.Any(p => k.StartsWith(p, StringComparison.Ordinal))).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new BadInputException(Describe(missing, unexpected), checkpoint.Path);
        return new LoadReport(loaded.Count, missing, unexpected, ignored);
    }

    /// <summary>Non-persistent buffers that some exports still contain.</summary>
    static bool IsBufferKey(string key) =>
        key.EndsWith(".position_ids", StringComparison.Ordinal) || key.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);

    static string Describe(List<string> missing, List<string> unexpected)
    {
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"{missing.Count} missing key(s): {string.Join(", ", missing.Take(5))}{(missing.Count > 5 ? ", …" : "")}");
        if (unexpected.Count > 0) parts.Add($"{unexpected.Count} unexpected key(s): {string.Join(", ", unexpected.Take(5))}{(unexpected.Count > 5 ? ", …" : "")}");
        return "checkpoint does not match the model (strict): " + string.Join("; ", parts);
    }
}
