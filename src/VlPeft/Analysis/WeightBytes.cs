using VlPeft.Models;
using VlPeft.Nn.Quantization;

namespace VlPeft.Analysis;

/// <summary>
/// Bytes of one top-level component's weights under each storage choice: everything fp32; the frozen towers in bf16; the
/// frozen towers' linear weights in int8 or nf4 (scales included, double-quantized nf4) with their other tensors in bf16;
/// and the same with their token tables quantized too (<c>model.quantize_embeddings</c>). Parts outside the frozen towers
/// (the bridge, adapters) stay fp32 in every column.
/// </summary>
public sealed record WeightBytes(string Name, long Fp32, long Bf16, long Int8, long Nf4, long Int8Tables, long Nf4Tables)
{
    /// <summary>From shapes alone: the model may live on the meta device.</summary>
    public static IReadOnlyList<WeightBytes> Of(VisionLanguageModel model)
    {
        var kinds = model.named_modules().Where(m => m.module is Nn.Linear or Nn.Embedding { IsTokenTable: true })
            .ToDictionary(m => m.name + ".weight", m => m.module is Nn.Linear);
        var rows = new Dictionary<string, long[]>();
        foreach (var (name, p) in model.named_parameters())
        {
            string component = name.Split('.')[0];
            var row = rows.TryGetValue(component, out var r) ? r : rows[component] = new long[6];
            bool frozenTower = model.GroupOf(name) is { FrozenTower: true };
            long n = p.NumberOfElements, full = (frozenTower ? 2 : 4) * n;
            row[0] += 4 * n;
            row[1] += full;
            // Linear weights are quantized in both choices, token tables only with quantize_embeddings.
            bool linear = kinds.TryGetValue(name, out bool isLinear) && isLinear, table = kinds.ContainsKey(name) && !linear;
            long Bytes(string format, bool tables) => frozenTower && (linear || (table && tables)) ? QuantizedWeight.BytesFor(format, p.shape[0], p.shape[1], 2) : full;
            row[2] += Bytes(QuantizedWeight.Int8, false);
            row[3] += Bytes(QuantizedWeight.Nf4, false);
            row[4] += Bytes(QuantizedWeight.Int8, true);
            row[5] += Bytes(QuantizedWeight.Nf4, true);
        }
        return rows.Select(kv => new WeightBytes(kv.Key, kv.Value[0], kv.Value[1], kv.Value[2], kv.Value[3], kv.Value[4], kv.Value[5])).ToList();
    }
}
