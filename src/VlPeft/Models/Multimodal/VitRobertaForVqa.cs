using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Models.Language;
using VlPeft.Models.Vision;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// The routing paper's VQAv2 classifier (models.md §10.1): the frozen ViT's pooled feature x_v [B, 1, D] is published
/// for routed adapters and prepended to RoBERTa's word embeddings (the visual prefix; the mask gets a leading 1);
/// positions, token types and LayerNorm are applied once to the whole sequence (the reference code applies them a
/// second time to the text, a quirk not reproduced). The pooler (dense + tanh) reads position 0, the visual token,
/// and the 2-layer head (Linear → LayerNorm → GELU → Linear) gives one logit per answer. Labels are soft VQA scores
/// [B, C]; the loss is binary cross-entropy with logits summed over answers and averaged over the batch (LXMERT's
/// and VL-T5's scaling of the mean by the number of answers).
/// </summary>
public sealed class VitRobertaForVqa : VisionLanguageModel, ITowerPretraining
{
    readonly VitModel? vit;
    readonly RobertaModel? roberta;
    VqaClassifierHead classifier;

    public VitRobertaForVqa(VitRobertaVqaConfig config, ModelBuildOptions? options = null) : base(VitRobertaVqaConfig.Type)
    {
        options ??= new ModelBuildOptions();
        Config = config;
        if (!options.SkipVision) vit = new VitModel(config.Vision, "vit", options.Device);
        if (!options.SkipLanguageModel) roberta = new RobertaModel(config.Text, options.Device);
        classifier = new VqaClassifierHead(config.Text.HiddenSize, config.NumLabels, options.Device);
        RegisterComponents();
    }

    public VitRobertaVqaConfig Config { get; }
    public override string ModelType => VitRobertaVqaConfig.Type;

    /// <summary>The visual prefix and the longest question.</summary>
    public override IReadOnlyList<Analysis.TowerShape> TowerShapes => new[]
    {
        VisionTower(Config.Vision),
        new Analysis.TowerShape("roberta", Config.MaxQuestionTokens + 1, Config.Text.HiddenSize, Config.Text.NumHiddenLayers, Config.Text.NumAttentionHeads, Config.Text.IntermediateSize),
    };
    public override string ConfigJson() => Config.ToJson();
    public override string? PeftTaskType => "SEQ_CLS";
    public override IReadOnlyList<string> PublishedContext => new[] { ForwardContext.VisualFeatures };

    public override IReadOnlyList<ParameterGroup> ParameterGroups { get; } = new ParameterGroup[]
    {
        new("vision", new[] { "vit" }, FrozenTower: true),
        new("language_model", new[] { "roberta" }, FrozenTower: true),
        new("head", new[] { "classifier" }),
    };

    VitModel Vit => vit ?? throw new InvalidOperationException("the vision model was not built");
    RobertaModel Roberta => roberta ?? throw new InvalidOperationException("the language model was not built");

    /// <summary>
    /// The same model with a new head for another answer vocabulary (HF's from_pretrained with other labels): every
    /// other weight copied, the head freshly initialised and trained from there, as the paper's classifier is.
    /// </summary>
    public VitRobertaForVqa WithAnswers(IReadOnlyList<string> labels)
    {
        var device = parameters().First().device;
        var copy = new VitRobertaForVqa(Config with { Id2Label = labels.ToList() }, new ModelBuildOptions { Device = device });
        var mine = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (torch.no_grad())
            foreach (var (name, p) in copy.named_parameters().Where(p => !p.name.StartsWith("classifier.")))
                p.copy_(mine[name]);
        return copy;
    }

    public Tensor PooledImage(Tensor pixelValues) => Vit.call(pixelValues).Pooled;

    public override VisionLanguageOutput forward(VisionLanguageInputs input)
    {
        using var scope = torch.NewDisposeScope();
        using var published = Context.Begin();
        var visual = PooledImage(input.PixelValues).unsqueeze(1);                                  // [B, 1, D]
        Context.Publish(ForwardContext.VisualFeatures, visual);
        var words = Roberta.WordEmbeddings(input.InputIds);
        var embeds = torch.cat(new[] { visual.to(words.dtype), words }, 1);
        var mask = torch.cat(new[] { torch.ones(input.InputIds.shape[0], 1, dtype: ScalarType.Int64, device: words.device), input.AttentionMask ?? torch.ones_like(input.InputIds) }, 1);
        var pooled = Roberta.Pool(Roberta.Encode(embeds, mask));
        var logits = classifier.call(pooled.to(classifier.parameters().First().dtype));   // the head trains in full: fp32 under a bf16 tower
        var loss = input.Labels is null ? null : SoftScoreLoss(logits, input.Labels);
        var intermediates = new Dictionary<string, Tensor> { ["visual_feature"] = visual.MoveToOuterDisposeScope(), ["pooled_output"] = pooled.MoveToOuterDisposeScope() };
        return new VisionLanguageOutput(logits.MoveToOuterDisposeScope(), loss?.MoveToOuterDisposeScope(), visual, intermediates);
    }

    /// <summary>BCE with logits against soft scores, summed over answers, mean over the batch.</summary>
    public static Tensor SoftScoreLoss(Tensor logits, Tensor scores) =>
        F.binary_cross_entropy_with_logits(logits, scores.to(logits.dtype), reduction: nn.Reduction.Sum) / logits.shape[0];

    public override Tensor ClassScores(VisionLanguageInputs batch) => call(batch).Logits;

    public override Tensor CandidateTokenNll(VisionLanguageInputs candidates) =>
        throw new BadInputException("the ViT + RoBERTa VQA model is a classifier: it scores its answer vocabulary, not candidate texts");

    public override IncrementalDecoder StartDecoding(VisionLanguageInputs prompt) =>
        throw new BadInputException("the ViT + RoBERTa VQA model is a classifier: it does not generate text (its prediction is the best-scoring answer)");

    public override Tensor EmbedTokens(Tensor ids) => Roberta.WordEmbeddings(ids);

    public int MaxTextTokens => Config.Text.MaxPositionEmbeddings - Config.Text.PadTokenId - 1;

    public Tensor WordEmbeddingMatrix => Roberta.WordEmbeddings(torch.arange(Config.Text.VocabSize, dtype: ScalarType.Int64));

    /// <summary>Masked-token prediction with the word embeddings as the (tied) output layer, on 15% of the real tokens.</summary>
    public Tensor TextOnlyLoss(Tensor inputIds, Tensor attentionMask, int maskTokenId, Random random)
    {
        using var scope = torch.NewDisposeScope();
        var picks = torch.tensor(Enumerable.Range(0, (int)inputIds.numel()).Select(_ => random.NextDouble() < 0.15).ToArray()).view(inputIds.shape)
            .logical_and(attentionMask.eq(1));
        var masked = torch.where(picks, torch.full_like(inputIds, maskTokenId), inputIds);
        var hidden = Roberta.Encode(Roberta.WordEmbeddings(masked), attentionMask);
        var logits = hidden.matmul(WordEmbeddingMatrix.t());
        var targets = torch.where(picks, inputIds, torch.full_like(inputIds, -100));
        if (!picks.any().item<bool>()) return (logits.sum() * 0).MoveToOuterDisposeScope();
        return F.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: -100).MoveToOuterDisposeScope();
    }

    public override void CheckInputs(VisionLanguageInputs x)
    {
        long batch = InputChecks.Pixels(x.PixelValues, Config.Vision);
        InputChecks.Ids("input_ids", x.InputIds, batch, Config.Text.VocabSize);
        InputChecks.Mask("attention_mask", x.AttentionMask, x.InputIds);
        if (x.InputIds.shape[1] + 1 > Config.Text.MaxPositionEmbeddings - Config.Text.PadTokenId - 1)
            throw new BadInputException($"input_ids has {x.InputIds.shape[1]} tokens; with the visual prefix RoBERTa takes at most {Config.Text.MaxPositionEmbeddings - Config.Text.PadTokenId - 2}");
        if (x.Labels is { } labels && (!labels.shape.SequenceEqual(new[] { batch, (long)Config.NumLabels }) || !labels.is_floating_point()
            || labels.lt(0).any().item<bool>() || labels.gt(1).any().item<bool>()))
            throw new BadInputException($"labels must be soft answer scores in [0, 1], [batch, {Config.NumLabels}], got {labels.dtype} [{string.Join(", ", labels.shape)}]");
    }
}

/// <summary>The paper's 2-layer head under <c>classifier.{0,1,3}</c> (an nn.Sequential of Linear, LayerNorm, GELU, Linear).</summary>
sealed class VqaClassifierHead : nn.Module<Tensor, Tensor>
{
    readonly Nn.Linear first, last;
    readonly Nn.LayerNorm norm;

    public VqaClassifierHead(long hidden, long labels, Device? device) : base("classifier")
    {
        first = new Nn.Linear(hidden, 2 * hidden, device: device);
        norm = new Nn.LayerNorm(2 * hidden, 1e-5, device: device);   // nn.LayerNorm(1536): PyTorch's default eps
        last = new Nn.Linear(2 * hidden, labels, device: device);
        register_module("0", first);
        register_module("1", norm);
        register_module("3", last);
    }

    public override Tensor forward(Tensor pooled) => last.call(F.gelu(norm.call(first.call(pooled))));
}
