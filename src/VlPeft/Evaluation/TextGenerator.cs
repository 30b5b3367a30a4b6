using TorchSharp;
using VlPeft.Runtime;
using VlPeft.Models.Language;
using VlPeft.Models.Multimodal;
using static TorchSharp.torch;

namespace VlPeft.Evaluation;

/// <summary>Decoding settings: greedy (default), beam search, or temperature + top-p sampling.</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 32;
    public int NumBeams { get; init; } = 1;
    /// <summary>0 means greedy / beam; above 0 samples with this temperature and <see cref="TopP"/>.</summary>
    public double Temperature { get; init; }
    public double TopP { get; init; } = 1.0;
    public int Seed { get; init; }
}

/// <summary>
/// Generates answers from an image and an instruction. Without a KV cache the prefix is recomputed
/// each step, which is fine for the short answers of the benchmarks (and the tiny demo models).
/// </summary>
public sealed class TextGenerator
{
    readonly BlipForConditionalGeneration model;
    readonly BlipProcessor processor;

    public TextGenerator(BlipForConditionalGeneration model, BlipProcessor processor)
    {
        this.model = model;
        this.processor = processor;
    }

    public string Generate(string? imagePath, string instruction, GenerationOptions? options = null)
    {
        options ??= new GenerationOptions();
        using var quiet = GcQuietRegion.Enter();   // implicit Scalars must outlive their native calls
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        model.eval();
        var pixels = processor.Pixels(new[] { imagePath });
        var q = processor.QFormerText(new[] { instruction });
        var (_, _, projected) = model.EncodeImage(pixels, q?.Ids, q?.Mask);
        var prompt = torch.tensor(processor.InstructionIds(instruction).Select(i => (long)i).ToArray()).unsqueeze(0);
        var (embeds, mask) = model.AssembleInputs(projected, prompt, null);
        Func<List<long>, Tensor> nextLogits;
        List<long> start;
        if (model.LanguageModel is T5Model t5)
        {
            var memory = t5.Encode(embeds, mask);
            start = new List<long> { 0 }; // decoder_start_token_id (= pad) for T5-style models
            nextLogits = ids => t5.Decode(memory, mask, torch.tensor(ids.ToArray()).unsqueeze(0), null)[0, -1];
        }
        else
        {
            start = new List<long>();
            nextLogits = ids =>
            {
                var tail = ids.Count == 0 ? embeds : torch.cat(new[] { embeds, model.LanguageModel.EmbedTokens(torch.tensor(ids.ToArray()).unsqueeze(0)) }, 1);
                var m = torch.ones(1, tail.shape[1], dtype: ScalarType.Int64);
                return model.LanguageModel.CausalLogits(tail, m)[0, -1];
            };
        }
        int eos = processor.LmTokenizer.EosId ?? -1;
        var generated = options.NumBeams > 1 && options.Temperature <= 0
            ? Beam(start, nextLogits, eos, options)
            : Sample(start, nextLogits, eos, options);
        var answer = generated.Skip(start.Count).TakeWhile(t => t != eos).Select(t => (int)t).ToList();
        return processor.LmTokenizer.Decode(answer).Trim();
    }

    static List<long> Sample(List<long> ids, Func<List<long>, Tensor> nextLogits, int eos, GenerationOptions o)
    {
        var generator = new Generator((ulong)o.Seed);
        ids = new List<long>(ids);
        for (int step = 0; step < o.MaxNewTokens; step++)
        {
            using var scope = torch.NewDisposeScope();
            var logits = nextLogits(ids).to(ScalarType.Float32);
            long next;
            if (o.Temperature <= 0) next = logits.argmax().item<long>();
            else
            {
                var probs = (logits / o.Temperature).softmax(-1);
                var (sorted, order) = probs.sort(descending: true);
                var cumulative = sorted.cumsum(0);
                // Keep the smallest prefix whose mass reaches top_p (the first token always stays).
                var keep = (cumulative - sorted).lt(o.TopP);
                var filtered = sorted * keep.to(ScalarType.Float32);
                int pick = (int)torch.multinomial(filtered / filtered.sum(), 1, generator: generator).item<long>();
                next = order[pick].item<long>();
            }
            ids.Add(next);
            if (next == eos) break;
        }
        return ids;
    }

    static List<long> Beam(List<long> start, Func<List<long>, Tensor> nextLogits, int eos, GenerationOptions o)
    {
        var beams = new List<(List<long> Ids, double Score, bool Done)> { (new List<long>(start), 0, false) };
        for (int step = 0; step < o.MaxNewTokens && beams.Any(b => !b.Done); step++)
        {
            var candidates = new List<(List<long>, double, bool)>();
            foreach (var beam in beams)
            {
                if (beam.Done) { candidates.Add(beam); continue; }
                using var scope = torch.NewDisposeScope();
                var logProbs = nextLogits(beam.Ids).to(ScalarType.Float32).log_softmax(-1);
                var (values, indices) = logProbs.topk(o.NumBeams);
                for (int k = 0; k < o.NumBeams; k++)
                {
                    long token = indices[k].item<long>();
                    candidates.Add((beam.Ids.Append(token).ToList(), beam.Score + values[k].item<float>(), token == eos));
                }
            }
            // Rank by length-normalized log-probability (HF's length_penalty = 1).
            beams = candidates.OrderByDescending(c => c.Item2 / Math.Max(1, c.Item1.Count - start.Count)).Take(o.NumBeams).ToList();
        }
        return beams.OrderByDescending(b => b.Score / Math.Max(1, b.Ids.Count - start.Count)).First().Ids;
    }
}
