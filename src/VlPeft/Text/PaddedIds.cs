using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Text;

/// <summary>Token rows padded on the right to the longest (at least one position): ids [B, T] and the attention mask (1 = token).</summary>
public static class PaddedIds
{
    public static (Tensor Ids, Tensor Mask) Of(IReadOnlyList<IReadOnlyList<int>> rows, long pad)
    {
        int length = Math.Max(1, rows.Max(r => r.Count));
        var ids = new long[rows.Count * length];
        var mask = new long[rows.Count * length];
        for (int b = 0; b < rows.Count; b++)
            for (int t = 0; t < length; t++)
            {
                bool token = t < rows[b].Count;
                ids[b * length + t] = token ? rows[b][t] : pad;
                mask[b * length + t] = token ? 1 : 0;
            }
        return (torch.tensor(ids).view(rows.Count, length), torch.tensor(mask).view(rows.Count, length));
    }
}
