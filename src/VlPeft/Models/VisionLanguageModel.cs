using TorchSharp;
using VlPeft.Models.Language;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Models;

/// <summary>
/// The contract every vision-language composite implements (InstructBLIP, BLIP-2, and the families
/// registered after them). Training, ranking, generation, reports and loaders use only this, so none
/// of them names a family. The processor that turns images and text into batches comes from the
/// family (<see cref="ModelFamily.LoadProcessor"/>).
/// </summary>
public abstract class VisionLanguageModel : nn.Module<VisionLanguageInputs, VisionLanguageOutput>
{
    protected VisionLanguageModel(string name) : base(name) { }

    /// <summary>config.json's model_type, by which the family is registered.</summary>
    public abstract string ModelType { get; }

    /// <summary>The HF config.json text of this model (written beside saved weights).</summary>
    public abstract string ConfigJson();

    /// <summary>
    /// Named parts of the model (vision, connector, qformer, language_model, head): the parameter report,
    /// the bf16 cast of frozen towers and per-group learning rates all use these.
    /// </summary>
    public abstract IReadOnlyList<ParameterGroup> ParameterGroups { get; }

    /// <summary>Tensors the current forward publishes for adapters that need them (the visual feature x_v).</summary>
    public ForwardContext Context { get; } = new();

    /// <summary>The names this model publishes in <see cref="Context"/> during a forward.</summary>
    public virtual IReadOnlyList<string> PublishedContext => Array.Empty<string>();

    /// <summary>The transformer stacks a training step runs, at the processor's longest inputs (the memory estimate before a run).</summary>
    public virtual IReadOnlyList<Analysis.TowerShape> TowerShapes => Array.Empty<Analysis.TowerShape>();

    /// <summary>A ViT-style tower's shape: patches + [CLS].</summary>
    public static Analysis.TowerShape VisionTower(Configs.VisionConfig v) =>
        new("vision", (long)(v.ImageSize / v.PatchSize) * (v.ImageSize / v.PatchSize) + 1, v.HiddenSize, v.NumHiddenLayers, v.NumAttentionHeads, v.IntermediateSize);

    /// <summary>HF PEFT's task_type for adapters of this model (written into adapter_config.json), or null.</summary>
    public virtual string? PeftTaskType => null;

    /// <summary>How candidate NLLs become a score when a caller does not say (LAVIS: sum for T5, mean for LLaMA).</summary>
    public virtual NllReduction CandidateReduction => NllReduction.Sum;

    /// <summary>
    /// Checks user-supplied inputs against the model (shapes, token ids within the vocabularies) with one
    /// clear error, before any tensor op could fail natively. Batches from the family's processor are valid.
    /// </summary>
    public virtual void CheckInputs(VisionLanguageInputs inputs) { }

    /// <summary>
    /// Called after site adapters were folded into the layers after their sites (which may have given bias-free
    /// layers a bias): the model makes its config and layers agree again (LLaMA's attention_bias / mlp_bias).
    /// </summary>
    public virtual void AfterAdaptersFolded() { }

    /// <summary>The training loss of a labelled batch.</summary>
    public virtual Tensor Loss(VisionLanguageInputs batch) =>
        call(batch).Loss ?? throw new BadInputException("the batch has no labels to compute a loss from");

    /// <summary>
    /// Per-token NLL [n, positions] of n candidate answers to one example (one image, the prompt repeated),
    /// 0 where the label is −100. Implementations encode the image once.
    /// </summary>
    public abstract Tensor CandidateTokenNll(VisionLanguageInputs candidates);

    /// <summary>Starts generating an answer to one prompt (batch of 1, no labels).</summary>
    public abstract IncrementalDecoder StartDecoding(VisionLanguageInputs prompt);

    /// <summary>Class scores [B, C] of classifier families (the routing paper's VQA head).</summary>
    public virtual Tensor ClassScores(VisionLanguageInputs batch) =>
        throw new NotSupportedException($"{ModelType} is a generative model: it has no classification head");

    /// <summary>Token embeddings of the language side, [B, T] → [B, T, D].</summary>
    public abstract Tensor EmbedTokens(Tensor ids);

    /// <summary>Cross-entropy per position with −100 positions contributing 0, shaped like <paramref name="targets"/>.</summary>
    public static Tensor TokenNll(Tensor logits, Tensor targets)
    {
        var flat = F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(ScalarType.Float32), targets.reshape(-1), ignore_index: -100, reduction: nn.Reduction.None);
        return flat.view(targets.shape);
    }

    /// <summary>The group a parameter path belongs to, or null.</summary>
    public ParameterGroup? GroupOf(string parameterName) => ParameterGroups.FirstOrDefault(g => g.Contains(parameterName));
}

/// <summary>How a candidate's per-token losses become its score (datasets-and-metrics.md §8.1).</summary>
public enum NllReduction
{
    /// <summary>LAVIS T5: the sum of token NLL over the candidate's tokens.</summary>
    Sum,
    /// <summary>LAVIS LLaMA: the mean over the full padded sequence length (ignored positions count as 0).</summary>
    MeanOverPaddedLength,
}

/// <summary>
/// A named part of a model: the module paths (prefixes) it holds, and whether it is a large pretrained
/// tower that stays frozen in the papers' recipes (and may be cast to bf16).
/// </summary>
public sealed record ParameterGroup(string Name, IReadOnlyList<string> Prefixes, bool FrozenTower = false)
{
    public bool Contains(string parameterName) =>
        Prefixes.Any(p => parameterName == p || parameterName.StartsWith(p + ".", StringComparison.Ordinal));
}

/// <summary>What to build: parts can be left out for parameter-only work, and everything can live on the meta device.</summary>
public sealed record ModelBuildOptions
{
    public bool SkipVision { get; init; }
    public bool SkipLanguageModel { get; init; }
    /// <summary>torch.META builds the module tree without allocating weights (for counting).</summary>
    public Device? Device { get; init; }
}

/// <summary>
/// HF forward arguments of the composites (names as in Transformers); a family uses the ones it needs.
/// <c>ImageIndicators</c> [B] (LaVIN's indicators): 1 where the example has an image, 0 for text-only examples.
/// </summary>
public sealed record VisionLanguageInputs(
    Tensor PixelValues,
    Tensor InputIds,
    Tensor? AttentionMask = null,
    Tensor? QFormerInputIds = null,
    Tensor? QFormerAttentionMask = null,
    Tensor? DecoderInputIds = null,
    Tensor? DecoderAttentionMask = null,
    Tensor? Labels = null,
    Tensor? ImageIndicators = null);

/// <summary>
/// A composite's outputs: logits, the loss when labels were given, the visual tokens as the language model
/// sees them ([B, N_v, D]), and named intermediates (what <c>vlpeft forward</c> writes for parity checks).
/// </summary>
public sealed record VisionLanguageOutput(
    Tensor Logits,
    Tensor? Loss,
    Tensor VisualTokens,
    IReadOnlyDictionary<string, Tensor> Intermediates);
