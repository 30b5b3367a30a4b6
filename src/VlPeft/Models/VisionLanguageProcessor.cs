using static TorchSharp.torch;

namespace VlPeft.Models;

/// <summary>One training example: an image (null = blank), the instruction, and the target text.</summary>
public sealed record TextExample(string? ImagePath, string Instruction, string Target);

/// <summary>
/// A family's processor (HF's *Processor): images and text in, model batches out. Ranking, generation
/// and training tasks build every batch through it, so they never assemble a family's inputs themselves.
/// </summary>
public abstract class VisionLanguageProcessor
{
    /// <summary>A labelled batch; <paramref name="augment"/> (training only) drives image augmentation.</summary>
    public abstract VisionLanguageInputs TrainingBatch(IReadOnlyList<TextExample> examples, Random? augment = null);

    /// <summary>One image and prompt with n candidate answers as labels (for <see cref="VisionLanguageModel.CandidateTokenNll"/>).</summary>
    public abstract VisionLanguageInputs CandidateBatch(string? imagePath, string instruction, IReadOnlyList<string> candidates);

    /// <summary>One image and prompt, no labels (for <see cref="VisionLanguageModel.StartDecoding"/>).</summary>
    public abstract VisionLanguageInputs PromptBatch(string? imagePath, string instruction);

    /// <summary>The end-of-sequence id generation stops at (null: none).</summary>
    public abstract int? EosId { get; }

    /// <summary>Generated ids (after the decoder's start ids, before EOS) → text.</summary>
    public abstract string Decode(IReadOnlyList<int> ids);
}
