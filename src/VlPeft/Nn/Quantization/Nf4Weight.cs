using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Nn.Quantization;

/// <summary>
/// 4-bit NormalFloat (QLoRA, Dettmers et al. 2023; bitsandbytes' quantize_4bit with quant_type nf4): the weight,
/// flattened, is cut into blocks of 64; each block is divided by its absolute maximum and every value replaced by the
/// index of the nearest of the 16 NF4 levels; two indices per byte, the first in the high nibble. With double
/// quantization the fp32 block maxima are themselves quantized: their mean is subtracted (the offset) and the rest is
/// quantized in blocks of 256 with bitsandbytes' signed 8-bit dynamic map, so a block's scale costs 8 bits + 32/256.
/// </summary>
public sealed class Nf4Weight : QuantizedWeight
{
    public const int BlockSize = 64, NestedBlockSize = 256;

    /// <summary>The NF4 levels (QLoRA appendix E; bitsandbytes' NF4 table), normal quantiles scaled to [−1, 1] with an exact 0.</summary>
    public static readonly float[] Levels =
    {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    };

    readonly Tensor packed;          // uint8 [⌈n/2⌉]
    readonly Tensor? absmax;         // fp32 [blocks], without double quantization
    readonly Tensor? absmaxCodes;    // uint8 [blocks], with it
    readonly Tensor? nestedAbsmax;   // fp32 [⌈blocks/256⌉]
    readonly Tensor code;            // fp32 [16]
    readonly Tensor? nestedCode;     // fp32 [256]
    readonly float offset;
    readonly int blockSize, nestedBlockSize;

    /// <summary>From stored parts (ours or a bitsandbytes checkpoint's), taking ownership of the tensors.</summary>
    public Nf4Weight(long outFeatures, long inFeatures, Tensor packed, Tensor code, int blockSize, Tensor? absmax,
        Tensor? absmaxCodes = null, Tensor? nestedAbsmax = null, Tensor? nestedCode = null, float offset = 0, int nestedBlockSize = NestedBlockSize,
        string format = Nf4)
        : base(outFeatures, inFeatures)
    {
        Format = format;
        long n = outFeatures * inFeatures, blocks = (n + blockSize - 1) / blockSize;
        if (packed.numel() != (n + 1) / 2) throw new BadInputException($"4-bit weight holds {packed.numel()} bytes; [{outFeatures}, {inFeatures}] needs {(n + 1) / 2}");
        if (code.numel() != 16) throw new BadInputException($"4-bit quant_map has {code.numel()} values; expected 16");
        if (packed.dtype != ScalarType.Byte || absmaxCodes is { dtype: not ScalarType.Byte })
            throw new BadInputException($"4-bit weight codes are {packed.dtype}{(absmaxCodes is null ? "" : $", absmax codes {absmaxCodes.dtype}")}; expected uint8");
        var scales = absmax ?? absmaxCodes ?? throw new ArgumentException("absmax or its codes are required");
        if (scales.numel() != blocks) throw new BadInputException($"4-bit absmax has {scales.numel()} values; {n} values in blocks of {blockSize} need {blocks}");
        if (absmaxCodes is not null && (nestedAbsmax is null || nestedCode is null || nestedCode.numel() != 256
                || nestedAbsmax.numel() != (blocks + nestedBlockSize - 1) / nestedBlockSize))
            throw new BadInputException("double-quantized 4-bit absmax needs nested_absmax (one per block of the absmax values) and a 256-value nested_quant_map");
        // Owned from here on, whatever dispose scope the caller is in.
        static Tensor Own(Tensor t, ScalarType? dtype = null) => (dtype is ScalarType d ? t.to(d) : t).reshape(-1).contiguous().DetachFromDisposeScope();   // flat, as the native kernels read it
        (this.packed, this.code, this.blockSize, this.absmax, this.absmaxCodes, this.nestedAbsmax, this.nestedCode, this.offset, this.nestedBlockSize) =
            (Own(packed), Own(code, ScalarType.Float32), blockSize, absmax is null ? null : Own(absmax, ScalarType.Float32), absmaxCodes is null ? null : Own(absmaxCodes),
             nestedAbsmax is null ? null : Own(nestedAbsmax, ScalarType.Float32), nestedCode is null ? null : Own(nestedCode, ScalarType.Float32), offset, nestedBlockSize);
    }

    /// <summary>nf4, or fp4 for a bitsandbytes checkpoint saved with that code (the levels come from its quant_map).</summary>
    public override string Format { get; }
    public bool DoubleQuant => absmaxCodes is not null;
    public int BlockSizeUsed => blockSize;
    public int NestedBlockSizeUsed => nestedBlockSize;
    public float Offset => offset;
    public Tensor Packed => packed;
    public Tensor Code => code;
    public Tensor? Absmax => absmax;
    public Tensor? AbsmaxCodes => absmaxCodes;
    public Tensor? NestedAbsmax => nestedAbsmax;
    public Tensor? NestedCode => nestedCode;

    public override long Bytes => packed.numel() + (absmax?.numel() * 4 ?? 0) + (absmaxCodes?.numel() ?? 0) + (nestedAbsmax?.numel() * 4 ?? 0) + 64 + (nestedCode is null ? 0 : 1024);

    public static long BytesFor(long n, bool doubleQuant)
    {
        long blocks = (n + BlockSize - 1) / BlockSize;
        return (n + 1) / 2 + (doubleQuant ? blocks + 4 * ((blocks + NestedBlockSize - 1) / NestedBlockSize) + 1024 : 4 * blocks) + 64;
    }

    /// <summary>Values handled per pass when quantizing or dequantizing (a multiple of the block size): bounds the temporaries and keeps them in cache (2^20 decoded 1.6× faster than 2^22 here).</summary>
    const long ChunkValues = 1L << 20;

    public static Nf4Weight Quantize(Tensor weightOutIn, bool doubleQuant = true)
    {
        using var quiet = Runtime.GcQuietRegion.Enter();   // implicit Scalars (x / 2, …) must outlive their native calls
        using var scope = torch.NewDisposeScope();
        long outF = weightOutIn.shape[0], inF = weightOutIn.shape[1], n = outF * inF;
        var flat = weightOutIn.detach().reshape(-1);
        var code = torch.tensor(Levels);
        var packed = torch.empty((n + 1) / 2, dtype: ScalarType.Byte);
        var absmax = torch.empty((n + BlockSize - 1) / BlockSize);
        // Chunk by chunk (block-aligned, so byte-aligned): a 7B layer's weight never has a full fp32 or int64 copy.
        for (long start = 0; start < n; start += ChunkValues)
        {
            using var chunkScope = torch.NewDisposeScope();
            long count = Math.Min(ChunkValues, n - start);
            var (blocks, max) = Blocks(flat.narrow(0, start, count).to(ScalarType.Float32), BlockSize);
            var indices = Nearest(blocks / max.unsqueeze(1), code).reshape(-1)[..(int)count];
            packed.narrow(0, start / 2, (count + 1) / 2).copy_(Pack(indices));
            absmax.narrow(0, start / BlockSize, max.shape[0]).copy_(max);
        }
        Tensor? codes = null, nested = null, nestedCode = null;
        float offset = 0;
        if (doubleQuant)
        {
            offset = absmax.mean().item<float>();
            nestedCode = DynamicMap();
            var (nestedBlocks, nestedMax) = Blocks(absmax - offset, NestedBlockSize);
            codes = Nearest(nestedBlocks / nestedMax.unsqueeze(1), nestedCode).reshape(-1)[..(int)absmax.numel()].to(ScalarType.Byte);
            nested = nestedMax;
        }
        return new Nf4Weight(outF, inF, packed, code, BlockSize, doubleQuant ? null : absmax, codes, nested, nestedCode, offset);
    }

    /// <summary>The fp32 scale of every block, or of the given blocks (double quantization undone).</summary>
    Tensor Scales(Tensor? blocks = null)
    {
        if (absmax is not null) return blocks is null ? absmax : absmax.index_select(0, blocks);
        var codes = blocks is null ? absmaxCodes! : absmaxCodes!.index_select(0, blocks);
        var nested = blocks is null ? nestedAbsmax!.repeat_interleave(nestedBlockSize)[..(int)absmaxCodes!.numel()]
            : nestedAbsmax!.index_select(0, blocks.div(nestedBlockSize, RoundingMode.floor));
        return nestedCode!.index_select(0, codes.to(ScalarType.Int32)).view(-1) * nested + offset;
    }

    /// <summary>[256, 2]: the two levels a packed byte holds (high nibble first), so one gather decodes two values.</summary>
    Tensor PairTable()
    {
        var index = torch.arange(256, dtype: ScalarType.Int64);
        return torch.stack(new[] { code.index_select(0, index.bitwise_right_shift(4)), code.index_select(0, index.bitwise_and(15)) }, 1);
    }

    public override Device Device => packed.device;

    internal override void DequantizeBlock(long row0, long rows, long col0, long cols, Tensor output, DequantizeKernel kernel, Tensor? rowIds = null) =>
        NativeDequantize.FourBit(this, row0, rows, col0, cols, output, kernel, rowIds);

    protected override Tensor DequantizeWithLibTorch(ScalarType dtype)
    {
        long n = OutFeatures * InFeatures;
        var result = torch.empty(n, dtype: dtype, device: packed.device);
        using (torch.NewDisposeScope())
        {
            var scales = Scales();
            var pairs = PairTable();
            // Block-aligned chunks: one gather per byte gives two fp32 values, scaled per block, written (cast) into the result.
            long chunk = ChunkValues / blockSize * blockSize;
            for (long start = 0; start < n; start += chunk)
            {
                using var chunkScope = torch.NewDisposeScope();
                long count = Math.Min(chunk, n - start), blocks = (count + blockSize - 1) / blockSize;
                var values = pairs.index_select(0, packed.narrow(0, start / 2, (count + 1) / 2).to(ScalarType.Int32)).view(-1);
                var blockScales = scales.narrow(0, start / blockSize, blocks);
                var scaled = count % blockSize == 0
                    ? values.view(blocks, blockSize).mul_(blockScales.unsqueeze(1)).view(-1)
                    : values[..(int)count].mul(blockScales.repeat_interleave(blockSize)[..(int)count]);
                result.narrow(0, start, count).copy_(scaled.narrow(0, 0, count));
            }
        }
        // The flat handle goes now, not when the GC finalizes it: a forward's dequantized weight must not outlive its matmul.
        using (result) return result.view(OutFeatures, InFeatures);
    }

    protected override Tensor GatherRowsWithLibTorch(Tensor rows, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        // The flat position of every value picked; a byte holds positions 2k (high nibble) and 2k + 1.
        var positions = (rows.unsqueeze(1) * InFeatures + torch.arange(InFeatures, dtype: ScalarType.Int64, device: rows.device)).view(-1);
        var bytes = packed.index_select(0, positions.div(2, RoundingMode.floor)).to(ScalarType.Int64);
        var nibbles = torch.where(positions.remainder(2).eq(0), bytes.bitwise_right_shift(4), bytes.bitwise_and(15));
        var values = code.index_select(0, nibbles).mul_(Scales(positions.div(blockSize, RoundingMode.floor)));
        return values.view(rows.numel(), InFeatures).to(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>[blocks, size] zero-padded, and each block's absolute maximum (1 for an all-zero block, as 0/0 has no level).</summary>
    internal static (Tensor Blocks, Tensor Absmax) Blocks(Tensor flat, int size)
    {
        long n = flat.numel(), count = (n + size - 1) / size;
        var padded = count * size == n ? flat : torch.cat(new[] { flat, torch.zeros(count * size - n, dtype: flat.dtype) });
        var blocks = padded.view(count, size);
        var absmax = blocks.abs().amax(new long[] { 1 });
        return (blocks, torch.where(absmax.eq(0), torch.ones_like(absmax), absmax));
    }

    /// <summary>Index of the nearest value of a sorted code for every element (ties to the lower index).</summary>
    internal static Tensor Nearest(Tensor normalized, Tensor sortedCode)
    {
        var midpoints = (sortedCode[1..] + sortedCode[..^1]) / 2;
        return torch.searchsorted(midpoints, normalized.contiguous(), right: false);
    }

    static Tensor Pack(Tensor indices)
    {
        var even = indices.numel() % 2 == 0 ? indices : torch.cat(new[] { indices, torch.zeros(1, dtype: indices.dtype) });
        var pairs = even.view(-1, 2).to(ScalarType.Byte);
        return pairs[.., 0].bitwise_left_shift(4).bitwise_or(pairs[.., 1]);
    }

    /// <summary>bitsandbytes' create_dynamic_map(signed = true): 7 decades of linearly spaced fractions, both signs, 0 and 1.</summary>
    public static Tensor DynamicMap()
    {
        var values = new List<float> { 0f, 1f };
        for (int i = 0; i < 7; i++)
        {
            var boundaries = torch.linspace(0.1, 1, (1 << i) + 1, dtype: ScalarType.Float32);
            var means = ((boundaries[..^1] + boundaries[1..]) / 2.0).data<float>().ToArray();
            double decade = Math.Pow(10, -6 + i);
            foreach (var m in means) { values.Add((float)(decade * m)); values.Add((float)(-decade * m)); }
        }
        values.Sort();
        return torch.tensor(values.ToArray());
    }

    public override void Dispose()
    {
        foreach (var t in new[] { packed, code, absmax, absmaxCodes, nestedAbsmax, nestedCode }) t?.Dispose();
    }
}
