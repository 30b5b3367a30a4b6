using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Models.Language;
using VlPeft.Models.Vision;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// The routing paper's COCO captioner (models.md §10.2): the frozen ViT's pooled feature x_v is published for routed
/// layers and is the first input position of GPT-2 (a visual prefix of length 1), followed by the caption's token
/// embeddings. Position i predicts caption token i, so the visual position predicts the first word: the reference
/// code drops that logit (its first word is never a target, while its generation starts from x_v alone) and does
/// not ignore EOS padding; here labels are the caption and one EOS, padding ignored. Generation re-runs the
/// sequence each step (no KV cache), which stays exact for every routing, including x_t x_tᵀ x_v that mixes positions.
/// </summary>
public sealed class VitGpt2ForCaptioning : VisionLanguageModel, ITowerPretraining
{
    readonly VitModel? vit;
    readonly Gpt2Model? transformer;

    public VitGpt2ForCaptioning(VitGpt2CaptioningConfig config, ModelBuildOptions? options = null) : base(VitGpt2CaptioningConfig.Type)
    {
        options ??= new ModelBuildOptions();
        Config = config;
        if (!options.SkipVision) vit = new VitModel(config.Vision, "vit", options.Device);
        if (!options.SkipLanguageModel) transformer = new Gpt2Model(config.Text, options.Device);
        RegisterComponents();
    }

    public VitGpt2CaptioningConfig Config { get; }
    public override string ModelType => VitGpt2CaptioningConfig.Type;

    /// <summary>The visual prefix and the longest caption, with logits over the vocabulary.</summary>
    public override IReadOnlyList<Analysis.TowerShape> TowerShapes => new[]
    {
        VisionTower(Config.Vision),
        new Analysis.TowerShape("gpt2", Config.MaxCaptionTokens + 1, Config.Text.NEmbd, Config.Text.NLayer, Config.Text.NHead, Config.Text.Inner, Config.Text.VocabSize),
    };
    public override string ConfigJson() => Config.ToJson();
    public override string? PeftTaskType => "CAUSAL_LM";
    public override IReadOnlyList<string> PublishedContext => new[] { ForwardContext.VisualFeatures };

    public override IReadOnlyList<ParameterGroup> ParameterGroups { get; } = new ParameterGroup[]
    {
        new("vision", new[] { "vit" }, FrozenTower: true),
        new("language_model", new[] { "transformer" }, FrozenTower: true),
    };

    VitModel Vit => vit ?? throw new InvalidOperationException("the vision model was not built");
    Gpt2Model Transformer => transformer ?? throw new InvalidOperationException("the language model was not built");

    public Tensor PooledImage(Tensor pixelValues) => Vit.call(pixelValues).Pooled;

    /// <summary>Publishes x_v [B, 1, D] and returns GPT-2's logits over [x_v; tokens] [B, 1 + T, V].</summary>
    Tensor Logits(Tensor visual, Tensor inputIds, Tensor? attentionMask)
    {
        Context.Publish(ForwardContext.VisualFeatures, visual);
        var tokens = Transformer.EmbedTokens(inputIds);
        var embeds = torch.cat(new[] { visual.to(tokens.dtype), tokens }, 1);
        var mask = torch.cat(new[] { torch.ones(inputIds.shape[0], 1, dtype: ScalarType.Int64, device: tokens.device), attentionMask ?? torch.ones_like(inputIds) }, 1);
        return Transformer.Logits(embeds, mask);
    }

    public override VisionLanguageOutput forward(VisionLanguageInputs input)
    {
        using var scope = torch.NewDisposeScope();
        using var published = Context.Begin();
        var visual = PooledImage(input.PixelValues).unsqueeze(1);
        var logits = Logits(visual, input.InputIds, input.AttentionMask);
        long length = input.InputIds.shape[1];
        var loss = input.Labels is null ? null
            : F.cross_entropy(logits[.., ..(int)length].reshape(-1, logits.shape[^1]).to(ScalarType.Float32), input.Labels.reshape(-1), ignore_index: -100);
        var intermediates = new Dictionary<string, Tensor> { ["visual_feature"] = visual.MoveToOuterDisposeScope() };
        return new VisionLanguageOutput(logits.MoveToOuterDisposeScope(), loss?.MoveToOuterDisposeScope(), visual, intermediates);
    }

    public override Tensor CandidateTokenNll(VisionLanguageInputs candidates)
    {
        using var scope = torch.NewDisposeScope();
        using var published = Context.Begin();
        var labels = candidates.Labels ?? throw new ArgumentException("candidate batches carry the candidates as labels");
        long n = candidates.InputIds.shape[0];
        var visual = PooledImage(candidates.PixelValues[0..1]).unsqueeze(1).expand(n, -1, -1);     // one image, n candidates
        var logits = Logits(visual, candidates.InputIds, candidates.AttentionMask);
        return TokenNll(logits[.., ..(int)candidates.InputIds.shape[1]], labels).MoveToOuterDisposeScope();
    }

    public override IncrementalDecoder StartDecoding(VisionLanguageInputs prompt) =>
        new RerunDecoder(this, PooledImage(prompt.PixelValues).unsqueeze(1), prompt.InputIds[0].data<long>().ToList());

    /// <summary>Each step runs [x_v; ids] again and returns the last position's logits.</summary>
    sealed class RerunDecoder : IncrementalDecoder
    {
        readonly VitGpt2ForCaptioning model;
        readonly Tensor visual;

        public RerunDecoder(VitGpt2ForCaptioning model, Tensor visual, IReadOnlyList<long> start)
        {
            this.model = model;
            this.visual = visual.detach().DetachFromDisposeScope();
            StartIds = start;
        }

        public override IReadOnlyList<long> StartIds { get; }

        public override Tensor NextLogits(IReadOnlyList<long> ids)
        {
            using var scope = torch.NewDisposeScope();
            var input = torch.tensor(ids.ToArray(), dtype: ScalarType.Int64, device: visual.device).view(1, ids.Count);
            var logits = model.Logits(visual, input, null);
            return logits[0, -1].MoveToOuterDisposeScope();
        }

        public override void Dispose() => visual.Dispose();
    }

    public override Tensor EmbedTokens(Tensor ids) => Transformer.EmbedTokens(ids);

    public int MaxTextTokens => Config.Text.NPositions;

    public Tensor WordEmbeddingMatrix => Transformer.EmbedTokens(torch.arange(Config.Text.VocabSize, dtype: ScalarType.Int64));

    /// <summary>Next-token prediction on text alone (no visual prefix).</summary>
    public Tensor TextOnlyLoss(Tensor inputIds, Tensor attentionMask, int maskTokenId, Random random)
    {
        using var scope = torch.NewDisposeScope();
        var logits = Transformer.Logits(Transformer.EmbedTokens(inputIds), attentionMask);
        var targets = torch.where(attentionMask.eq(1), inputIds, torch.full_like(inputIds, -100))[.., 1..];
        return F.cross_entropy(logits[.., ..^1].reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: -100).MoveToOuterDisposeScope();
    }

    public override void CheckInputs(VisionLanguageInputs x)
    {
        long batch = InputChecks.Pixels(x.PixelValues, Config.Vision);
        InputChecks.Ids("input_ids", x.InputIds, batch, Config.Text.VocabSize);
        InputChecks.Ids("labels", x.Labels, batch, Config.Text.VocabSize, allowIgnore: true);
        InputChecks.Mask("attention_mask", x.AttentionMask, x.InputIds);
        if (x.InputIds.shape[1] + 1 > Config.Text.NPositions)
            throw new BadInputException($"input_ids has {x.InputIds.shape[1]} tokens; with the visual prefix GPT-2 takes at most {Config.Text.NPositions - 1}");
        if (x.Labels is not null && !x.Labels.shape.SequenceEqual(x.InputIds.shape))
            throw new BadInputException($"labels must have the shape of input_ids [{batch}, {x.InputIds.shape[1]}], got [{string.Join(", ", x.Labels.shape)}]");
    }
}
