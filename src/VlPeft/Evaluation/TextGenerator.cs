using TorchSharp;
using VlPeft.Runtime;
using VlPeft.Models;
using VlPeft.Models.Language;
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

    /// <summary>Refuses settings that have no meaning (they would crash or silently fall back).</summary>
    public void Validate()
    {
        if (MaxNewTokens < 1) throw new BadInputException($"max new tokens must be >= 1, got {MaxNewTokens}");
        if (NumBeams < 1) throw new BadInputException($"--beams must be >= 1, got {NumBeams}");
        if (!double.IsFinite(Temperature) || Temperature < 0) throw new BadInputException($"--temperature must be a finite number >= 0 (0 = greedy/beam), got {Temperature}");
        if (!double.IsFinite(TopP) || TopP is <= 0 or > 1) throw new BadInputException($"--top-p must be in (0, 1], got {TopP}");
    }
}

/// <summary>
/// Generates answers from an image and an instruction through the model contract: the model starts a
/// decoder (which keeps what does not change between steps) and the processor decodes the ids.
/// </summary>
public sealed class TextGenerator
{
    readonly VisionLanguageModel model;
    readonly VisionLanguageProcessor processor;

    public TextGenerator(VisionLanguageModel model, VisionLanguageProcessor processor)
    {
        this.model = model;
        this.processor = processor;
    }

    public string Generate(string? imagePath, string instruction, GenerationOptions? options = null)
    {
        options ??= new GenerationOptions();
        options.Validate();
        using var quiet = GcQuietRegion.Enter();   // implicit Scalars must outlive their native calls
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        model.eval();
        using var published = model.Context.Begin();
        using var decoder = model.StartDecoding(processor.PromptBatch(imagePath, instruction));
        var start = decoder.StartIds.ToList();
        Func<List<long>, Tensor> nextLogits = ids => decoder.NextLogits(ids);
        int eos = processor.EosId ?? -1;
        var generated = options.NumBeams > 1 && options.Temperature <= 0
            ? Beam(start, nextLogits, eos, options)
            : Sample(start, nextLogits, eos, options);
        return processor.Decode(generated.Skip(start.Count).TakeWhile(t => t != eos).Select(t => (int)t).ToList());
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
