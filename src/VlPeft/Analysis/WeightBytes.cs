using VlPeft.Models;
using VlPeft.Nn.Quantization;

namespace VlPeft.Analysis;

/// <summary>
/// Bytes of one top-level component's weights under each storage choice: everything fp32; the frozen towers in bf16; and
/// the frozen towers' linear weights in int8 or nf4 (scales included, double-quantized nf4) with their other tensors in
/// bf16. Parts outside the frozen towers (the bridge, adapters) stay fp32 in every column.
/// </summary>
public sealed record WeightBytes(string Name, long Fp32, long Bf16, long Int8, long Nf4)
{
    /// <summary>From shapes alone: the model may live on the meta device.</summary>
    public static IReadOnlyList<WeightBytes> Of(VisionLanguageModel model)
    {
        var linearWeights = model.named_modules().Where(m => m.module is Nn.Linear)
            .ToDictionary(m => m.name + ".weight", m => (Nn.Linear)m.module);
        var rows = new Dictionary<string, long[]>();
        foreach (var (name, p) in model.named_parameters())
        {
            string component = name.Split('.')[0];
            var row = rows.TryGetValue(component, out var r) ? r : rows[component] = new long[4];
            long n = p.NumberOfElements;
            bool frozenTower = model.GroupOf(name) is { FrozenTower: true };
            row[0] += 4 * n;
            row[1] += (frozenTower ? 2 : 4) * n;
            if (frozenTower && linearWeights.TryGetValue(name, out var linear))
            {
                row[2] += QuantizedWeight.BytesFor(QuantizedWeight.Int8, linear.OutFeatures, linear.InFeatures, 2);
                row[3] += QuantizedWeight.BytesFor(QuantizedWeight.Nf4, linear.OutFeatures, linear.InFeatures, 2);
            }
            else
            {
                row[2] += (frozenTower ? 2 : 4) * n;
                row[3] += (frozenTower ? 2 : 4) * n;
            }
        }
        return rows.Select(kv => new WeightBytes(kv.Key, kv.Value[0], kv.Value[1], kv.Value[2], kv.Value[3])).ToList();
    }
}
