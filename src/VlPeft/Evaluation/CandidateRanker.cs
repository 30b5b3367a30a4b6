using TorchSharp;
using VlPeft.Models;
using VlPeft.Runtime;
using static TorchSharp.torch;

namespace VlPeft.Evaluation;

/// <summary>
/// InstructBLIP PEFT's evaluation: score every candidate answer by its LM loss given the image and the
/// instruction, and pick the lowest. The processor builds the candidate batch and the model encodes the
/// image once per example.
/// </summary>
public sealed class CandidateRanker
{
    readonly VisionLanguageModel model;
    readonly VisionLanguageProcessor processor;

    public CandidateRanker(VisionLanguageModel model, VisionLanguageProcessor processor, NllReduction? reduction = null)
    {
        this.model = model;
        this.processor = processor;
        Reduction = reduction ?? model.CandidateReduction;
    }

    public NllReduction Reduction { get; }

    /// <summary>Scores (lower is better) and the argmin index.</summary>
    public (int Best, double[] Scores) Rank(string? imagePath, string instruction, IReadOnlyList<string> candidates)
    {
        using var quiet = GcQuietRegion.Enter();   // implicit Scalars must outlive their native calls
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        model.eval();
        var tokenLoss = model.CandidateTokenNll(processor.CandidateBatch(imagePath, instruction, candidates));   // [n, positions]
        var summed = tokenLoss.sum(1);
        var scores = Reduction == NllReduction.Sum ? summed : summed / tokenLoss.shape[1];
        var values = scores.to(ScalarType.Float64).data<double>().ToArray();
        int best = Array.IndexOf(values, values.Min());
        return (best, values);
    }
}
