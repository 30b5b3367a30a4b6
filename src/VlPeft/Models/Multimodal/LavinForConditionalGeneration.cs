using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Models.Language;
using VlPeft.Models.Vision;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// The LaVIN-style model of the Bottleneck Adapter paper (models.md §9): CLIP ViT → [CLS] of every 4th block →
/// visual neck (<c>adapter_proj</c>) → visual tokens placed where input_ids hold the image placeholder, a
/// modality token (<c>adapter_modality_embedding</c>, 1 = image, 0 = text only) at position 0 that no other
/// token attends to, and LLaMA. Module names are LaVIN's for its own parts and HF's for the towers.
/// </summary>
public sealed class LavinForConditionalGeneration : VisionLanguageModel
{
    readonly ClipVisionModel? vision_model;
    readonly VisualNeck adapter_proj;
    readonly Nn.Embedding adapter_modality_embedding;
    readonly LlamaModel? language_model;

    public LavinForConditionalGeneration(LavinConfig config, ModelBuildOptions? options = null) : base(LavinConfig.Type)
    {
        options ??= new ModelBuildOptions();
        var device = options.Device;
        Config = config;
        if (!options.SkipVision) vision_model = new ClipVisionModel(config.Vision, device);
        adapter_proj = new VisualNeck(config.Vision.HiddenSize, config.NeckHiddenSize, config.Text.HiddenSize, config.NeckActivation == "swiglu", device);
        adapter_modality_embedding = new Nn.Embedding(2, config.Text.HiddenSize, device);
        if (!options.SkipLanguageModel) language_model = new LlamaModel(config.Text, device, privateFirstToken: true);
        RegisterComponents();
    }

    public LavinConfig Config { get; private set; }
    public override string ModelType => LavinConfig.Type;

    /// <summary>At LavinProcessor's default limit of 512 tokens (modality token and visual tokens included).</summary>
    public override IReadOnlyList<Analysis.TowerShape> TowerShapes => new[]
    {
        VisionTower(Config.Vision),
        new Analysis.TowerShape("lm", 512, Config.Text.HiddenSize, Config.Text.NumHiddenLayers, Config.Text.NumAttentionHeads, Config.Text.IntermediateSize, Config.Text.VocabSize),
    };
    public override string ConfigJson() => Config.ToJson();
    public override NllReduction CandidateReduction => NllReduction.MeanOverPaddedLength;
    public override string? PeftTaskType => "CAUSAL_LM";
    public override IReadOnlyList<string> PublishedContext => new[] { ForwardContext.VisualFeatures };

    /// <summary>The ViT and LLaMA stay frozen (bf16 in the recipe); the neck and the modality token train in full.</summary>
    public override IReadOnlyList<ParameterGroup> ParameterGroups { get; } = new ParameterGroup[]
    {
        new("vision", new[] { "vision_model" }, FrozenTower: true),
        new("connector", new[] { "adapter_proj", "adapter_modality_embedding" }),
        new("language_model", new[] { "language_model" }, FrozenTower: true),
    };

    public LlamaModel LanguageModel => language_model ?? throw new InvalidOperationException("the language model was not built");
    public ClipVisionModel VisionModel => vision_model ?? throw new InvalidOperationException("the vision model was not built");

    public override void AfterAdaptersFolded() => Config = Config with { Text = LanguageModel.UniformBiases() };

    /// <summary>pixel_values → the [CLS] taps [B, N, Dv] and the visual tokens after the neck [B, N, D].</summary>
    public (Tensor Taps, Tensor Visual) EncodeImage(Tensor pixelValues)
    {
        using var scope = torch.NewDisposeScope();
        var states = VisionModel.call(pixelValues);
        var taps = torch.stack(Config.VisionFeatureLayers.Select(l => states[l][.., 0]).ToArray(), 1);
        var visual = adapter_proj.call(taps);
        Context.Publish(ForwardContext.VisualFeatures, visual);
        return (taps.MoveToOuterDisposeScope(), visual.MoveToOuterDisposeScope());
    }

    /// <summary>[modality token; input embeddings with the visual tokens at the placeholder positions] [B, 1 + T, D].</summary>
    public Tensor AssembleInputs(Tensor visual, Tensor inputIds, Tensor? attentionMask, Tensor indicators)
    {
        using var scope = torch.NewDisposeScope();
        var text = LanguageModel.EmbedTokens(inputIds);
        var slots = ImageSlots(inputIds, attentionMask, indicators);                                       // [B, T]
        // The k-th placeholder of a row takes the row's k-th visual token.
        var order = (slots.to(ScalarType.Int64).cumsum(1) - 1).clamp(0, visual.shape[1] - 1);
        var placed = visual.to(text.dtype).gather(1, order.unsqueeze(-1).expand(-1, -1, text.shape[2]));
        var embeds = torch.where(slots.unsqueeze(-1), placed, text);
        var modality = adapter_modality_embedding.call(indicators.to(ScalarType.Int64)).unsqueeze(1).to(text.dtype);
        return torch.cat(new[] { modality, embeds }, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Placeholder positions of examples with an image; padding never counts (the pad id may equal the placeholder's).</summary>
    Tensor ImageSlots(Tensor inputIds, Tensor? attentionMask, Tensor indicators)
    {
        var slots = inputIds.eq(Config.ImageTokenIndex).logical_and(indicators.unsqueeze(1).eq(1));
        return attentionMask is null ? slots : slots.logical_and(attentionMask.eq(1));
    }

    static Tensor WithModalityMask(Tensor? attentionMask, Tensor inputIds) =>
        torch.cat(new[] { torch.ones(inputIds.shape[0], 1, dtype: ScalarType.Int64, device: inputIds.device), attentionMask ?? torch.ones_like(inputIds) }, 1);

    Tensor Indicators(VisionLanguageInputs input) =>
        input.ImageIndicators ?? torch.ones(input.InputIds.shape[0], dtype: ScalarType.Int64, device: input.InputIds.device);

    public override VisionLanguageOutput forward(VisionLanguageInputs input)
    {
        using var scope = torch.NewDisposeScope();
        using var published = Context.Begin();
        var (taps, visual) = EncodeImage(input.PixelValues);
        var embeds = AssembleInputs(visual, input.InputIds, input.AttentionMask, Indicators(input));
        var logits = LanguageModel.CausalLogits(embeds, WithModalityMask(input.AttentionMask, input.InputIds));
        var loss = input.Labels is null ? null : LanguageModel.LabelLoss(logits, input.Labels);
        var intermediates = new Dictionary<string, Tensor>
        {
            ["vision_cls_taps"] = taps.MoveToOuterDisposeScope(),
            ["visual_tokens"] = visual.MoveToOuterDisposeScope(),
        };
        return new VisionLanguageOutput(logits.MoveToOuterDisposeScope(), loss?.MoveToOuterDisposeScope(), visual, intermediates);
    }

    public override Tensor CandidateTokenNll(VisionLanguageInputs candidates)
    {
        using var scope = torch.NewDisposeScope();
        using var published = Context.Begin();
        var labels = candidates.Labels ?? throw new ArgumentException("candidate batches carry the candidates as labels");
        long n = candidates.InputIds.shape[0];
        var (_, visual) = EncodeImage(candidates.PixelValues[0..1]);                                   // one image, n candidates
        var indicators = Indicators(candidates);
        var embeds = AssembleInputs(visual.expand(n, -1, -1), candidates.InputIds, candidates.AttentionMask, indicators);
        var logits = LanguageModel.CausalLogits(embeds, WithModalityMask(candidates.AttentionMask, candidates.InputIds));
        var (predicted, targets) = LanguageModel.AlignWithLabels(logits, labels);
        return TokenNll(predicted, targets).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The prompt runs once with the modality token; routers keep the weights it gave them for the steps after
    /// (LaVIN's cached router weights). Positions stay consistent: the modality token holds cache slot 0.
    /// </summary>
    public override IncrementalDecoder StartDecoding(VisionLanguageInputs prompt)
    {
        var (_, visual) = EncodeImage(prompt.PixelValues);
        var embeds = AssembleInputs(visual, prompt.InputIds, prompt.AttentionMask, Indicators(prompt));
        Context.Phase = DecodingPhase.Prompt;
        try
        {
            var decoder = LanguageModel.StartDecoding(embeds, WithModalityMask(prompt.AttentionMask, prompt.InputIds));
            Context.Phase = DecodingPhase.Continue;
            return new PhaseDecoder(decoder, Context);
        }
        catch
        {
            Context.Phase = DecodingPhase.None;
            throw;
        }
    }

    /// <summary>Ends the decoding phase with the generation.</summary>
    sealed class PhaseDecoder : IncrementalDecoder
    {
        readonly IncrementalDecoder inner;
        readonly ForwardContext context;

        public PhaseDecoder(IncrementalDecoder inner, ForwardContext context)
        {
            this.inner = inner;
            this.context = context;
        }

        public override IReadOnlyList<long> StartIds => inner.StartIds;
        public override Tensor NextLogits(IReadOnlyList<long> ids) => inner.NextLogits(ids);

        public override void Dispose()
        {
            context.Phase = DecodingPhase.None;
            inner.Dispose();
        }
    }

    public override Tensor EmbedTokens(Tensor ids) => LanguageModel.EmbedTokens(ids);

    public override void CheckInputs(VisionLanguageInputs x)
    {
        long batch = InputChecks.Pixels(x.PixelValues, Config.Vision);
        InputChecks.Ids("input_ids", x.InputIds, batch, Config.Text.VocabSize);
        InputChecks.Ids("labels", x.Labels, batch, Config.Text.VocabSize, allowIgnore: true);
        InputChecks.Mask("attention_mask", x.AttentionMask, x.InputIds);
        if (x.Labels is not null && !x.Labels.shape.SequenceEqual(x.InputIds.shape))
            throw new BadInputException($"labels must have the shape of input_ids [{batch}, {x.InputIds.shape[1]}], got [{string.Join(", ", x.Labels.shape)}]");
        var indicators = Indicators(x);
        if (!indicators.shape.SequenceEqual(new[] { batch }) || !indicators.eq(0).logical_or(indicators.eq(1)).all().item<bool>())
            throw new BadInputException($"image_indicators must be [{batch}] of 0 (text only) or 1 (image)");
        var placeholders = ImageSlots(x.InputIds, x.AttentionMask, indicators).sum(1);
        var expected = indicators.to(ScalarType.Int64) * Config.NumVisualTokens;
        var row = placeholders.ne(expected).logical_and(indicators.eq(1)).nonzero();
        if (row.shape[0] > 0)
            throw new BadInputException($"input_ids row {row[0, 0].item<long>()} has {placeholders[row[0, 0]].item<long>()} image placeholders (id {Config.ImageTokenIndex}); an example with an image needs exactly {Config.NumVisualTokens}");
    }
}

/// <summary>LaVIN's visual neck (AdapterMLP): conv_B(act(conv_A(x))), xavier-uniform weights and zero biases; "swiglu" gates with conv_C.</summary>
sealed class VisualNeck : nn.Module<Tensor, Tensor>
{
    readonly Nn.Linear conv_A, conv_B;
    readonly Nn.Linear? conv_C;

    public VisualNeck(long input, long hidden, long output, bool gated, Device? device) : base("adapter_proj")
    {
        conv_A = Xavier(new Nn.Linear(input, hidden, device: device));
        conv_B = Xavier(new Nn.Linear(hidden, output, device: device));
        if (gated) conv_C = Xavier(new Nn.Linear(input, hidden, device: device));
        RegisterComponents();
    }

    static Nn.Linear Xavier(Nn.Linear layer)
    {
        if (layer.weight.device_type == DeviceType.META) return layer;
        using var _ = torch.no_grad();
        double bound = Math.Sqrt(6.0 / (layer.InFeatures + layer.OutFeatures));
        layer.weight.uniform_(-bound, bound);
        layer.bias!.zero_();
        return layer;
    }

    public override Tensor forward(Tensor x)
    {
        var h = x.to(conv_A.weight.dtype);
        var hidden = conv_C is null ? F.silu(conv_A.call(h)) : F.silu(conv_A.call(h)) * conv_C.call(h);
        return conv_B.call(hidden);
    }
}
