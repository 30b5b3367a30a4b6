using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Models.Language;
using VlPeft.Models.QFormer;
using VlPeft.Models.Vision;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Multimodal;

/// <summary>What to build: parts can be left out for parameter-only work, and everything can live on the meta device.</summary>
public sealed record ModelBuildOptions
{
    public bool SkipVision { get; init; }
    public bool SkipLanguageModel { get; init; }
    /// <summary>torch.META builds the module tree without allocating weights (for counting).</summary>
    public Device? Device { get; init; }
}

/// <summary>
/// BLIP-2 and InstructBLIP (HF Blip2ForConditionalGeneration / InstructBlipForConditionalGeneration),
/// legacy input path: image → vision_model → Q-Former (queries [+ instruction]) → first
/// num_query_tokens outputs → language_projection → prepended to the LM's input embeddings (the T5
/// encoder's input). Parameter paths equal HF checkpoint keys.
/// </summary>
public class BlipForConditionalGeneration : nn.Module<VisionLanguageInputs, VisionLanguageOutput>
{
    readonly BlipVisionModel? vision_model;
    readonly Parameter query_tokens;
    readonly QFormerModel qformer;
    readonly Linear language_projection;
    readonly LanguageModel? language_model;

    public BlipForConditionalGeneration(MultimodalConfig config, ModelBuildOptions? options = null) : base(config.ModelType)
    {
        options ??= new ModelBuildOptions();
        var device = options.Device;
        Config = config;
        if (!options.SkipVision) vision_model = new BlipVisionModel(config.Vision, device);
        // Random, as HF initializes them (normal, std 0.02): identical queries would stay identical under training.
        query_tokens = new Parameter(InitNormal(torch.empty(1, config.NumQueryTokens, config.QFormer.HiddenSize, device: device)));
        qformer = new QFormerModel(config.QFormer, withTextInput: config.IsInstructBlip, device);
        int lmHidden = config.Text.ModelType == "t5" ? config.Text.DModel : config.Text.HiddenSize;
        language_projection = new Linear(config.QFormer.HiddenSize, lmHidden, device: device);
        if (!options.SkipLanguageModel)
            language_model = config.Text.ModelType switch
            {
                "t5" => new T5Model(config.Text, device),
                "llama" => new LlamaModel(config.Text, device),
                "opt" => new OptModel(config.Text, device),
                _ => throw new BadInputException($"language model type '{config.Text.ModelType}' is not supported"),
            };
        RegisterComponents();
    }

    public MultimodalConfig Config { get; }

    internal static Tensor InitNormal(Tensor t, double std = 0.02)
    {
        if (t.device_type != DeviceType.META) using (torch.no_grad()) t.normal_(0, std);
        return t;
    }
    public LanguageModel LanguageModel => language_model ?? throw new InvalidOperationException("the language model was not built");
    public BlipVisionModel VisionModel => vision_model ?? throw new InvalidOperationException("the vision model was not built");

    /// <summary>The top-level component names, in HF order.</summary>
    public static readonly string[] ComponentNames = { "vision_model", "qformer", "query_tokens", "language_projection", "language_model" };

    /// <summary>Image and instruction → projected query tokens [B, Q, D], with the intermediates.</summary>
    public (Tensor Vision, Tensor QueryOutput, Tensor Projected) EncodeImage(Tensor pixelValues, Tensor? qformerInputIds, Tensor? qformerAttentionMask)
    {
        using var scope = torch.NewDisposeScope();
        var image = VisionModel.call(pixelValues);                                                   // [B, 1 + P, Hv]
        var queries = query_tokens.expand(image.shape[0], -1, -1).to(image.dtype);                   // [B, Q, Hq]
        var hidden = qformer.call(new QFormerInputs(queries, image, Config.IsInstructBlip ? qformerInputIds : null, qformerAttentionMask));
        var queryOutput = hidden[.., ..(int)Config.NumQueryTokens];                                   // [B, Q, Hq]
        var projected = language_projection.call(queryOutput);                                       // [B, Q, D]
        return (image.MoveToOuterDisposeScope(), queryOutput.MoveToOuterDisposeScope(), projected.MoveToOuterDisposeScope());
    }

    /// <summary>[projected queries; embed(input_ids)] and the matching mask (ones for the queries).</summary>
    public (Tensor Embeds, Tensor Mask) AssembleInputs(Tensor projected, Tensor inputIds, Tensor? attentionMask)
    {
        var lm = LanguageModel;
        var text = lm.EmbedTokens(inputIds);
        var embeds = torch.cat(new[] { projected.to(text.dtype), text }, 1);
        var mask = attentionMask ?? torch.ones_like(inputIds);
        var queryMask = torch.ones(inputIds.shape[0], projected.shape[1], dtype: mask.dtype, device: mask.device);
        return (embeds, torch.cat(new[] { queryMask, mask }, 1));
    }

    public override VisionLanguageOutput forward(VisionLanguageInputs input)
    {
        using var scope = torch.NewDisposeScope();
        var (image, queryOutput, projected) = EncodeImage(input.PixelValues, input.QFormerInputIds, input.QFormerAttentionMask);
        var (embeds, mask) = AssembleInputs(projected, input.InputIds, input.AttentionMask);
        var lm = LanguageModel;
        Tensor logits;
        Tensor? loss = null;
        if (lm.IsEncoderDecoder)
        {
            var t5 = (T5Model)lm;
            var decoderIds = input.DecoderInputIds ?? (input.Labels is null ? null : t5.ShiftRight(input.Labels))
                ?? throw new BadInputException("T5 needs decoder_input_ids or labels");
            logits = t5.Seq2SeqLogits(embeds, mask, decoderIds, input.DecoderAttentionMask);
            if (input.Labels is not null)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(ScalarType.Float32), input.Labels.reshape(-1), ignore_index: -100);
        }
        else
        {
            logits = lm.CausalLogits(embeds, mask);
            if (input.Labels is not null)
            {
                // HF legacy path: the labels cover the text part; predict token t + 1 from position t.
                long n = input.Labels.shape[1];
                var textLogits = logits[.., ^(int)n..];
                var shifted = textLogits[.., ..^1].reshape(-1, logits.shape[^1]).to(ScalarType.Float32);
                loss = F.cross_entropy(shifted, input.Labels[.., 1..].reshape(-1), ignore_index: -100);
            }
        }
        return new VisionLanguageOutput(image.MoveToOuterDisposeScope(), queryOutput.MoveToOuterDisposeScope(),
            projected.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope(), loss?.MoveToOuterDisposeScope());
    }
}

/// <summary>HF forward arguments of the composites (names as in Transformers).</summary>
public sealed record VisionLanguageInputs(
    Tensor PixelValues,
    Tensor InputIds,
    Tensor? AttentionMask = null,
    Tensor? QFormerInputIds = null,
    Tensor? QFormerAttentionMask = null,
    Tensor? DecoderInputIds = null,
    Tensor? DecoderAttentionMask = null,
    Tensor? Labels = null);

/// <summary>The named intermediate outputs (what <c>vlpeft forward</c> writes for parity checks).</summary>
public sealed record VisionLanguageOutput(
    Tensor VisionLastHiddenState,
    Tensor QFormerQueryOutput,
    Tensor LanguageProjectionOutput,
    Tensor Logits,
    Tensor? Loss);

/// <summary>Builds the composite a config describes.</summary>
public static class VisionLanguageModels
{
    public static BlipForConditionalGeneration Create(MultimodalConfig config, ModelBuildOptions? options = null) => new(config, options);
}
