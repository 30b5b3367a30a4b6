using TorchSharp;
using TorchSharp.Modules;
using VlPeft.Models.Configs;
using VlPeft.Models;
using VlPeft.Models.Language;
using VlPeft.Models.QFormer;
using VlPeft.Models.Vision;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Multimodal;

/// <summary>
/// BLIP-2 and InstructBLIP (HF Blip2ForConditionalGeneration / InstructBlipForConditionalGeneration),
/// legacy input path: image → vision_model → Q-Former (queries [+ instruction]) → first
/// num_query_tokens outputs → language_projection → prepended to the LM's input embeddings (the T5
/// encoder's input). Parameter paths equal HF checkpoint keys.
/// </summary>
public class BlipForConditionalGeneration : VisionLanguageModel
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

    public MultimodalConfig Config { get; private set; }

    public override void AfterAdaptersFolded()
    {
        if (language_model is LlamaModel llama) Config = Config with { Text = llama.UniformBiases() };
    }
    public override string ModelType => Config.ModelType;

    /// <summary>At BlipProcessor's limits (LAVIS's max_txt_len 128 and max_output_txt_len 256).</summary>
    public override IReadOnlyList<Analysis.TowerShape> TowerShapes
    {
        get
        {
            const int Text = 128, Output = 256;
            var (q, t) = (Config.QFormer, Config.Text);
            long queries = Config.NumQueryTokens;
            var shapes = new List<Analysis.TowerShape>
            {
                VisionTower(Config.Vision),
                new("qformer", queries + (Config.IsInstructBlip ? Text : 0), q.HiddenSize, q.NumHiddenLayers, q.NumAttentionHeads, q.IntermediateSize),
            };
            if (t.ModelType == "t5")
            {
                shapes.Add(new("lm encoder", queries + Text, t.DModel, t.NumLayers, t.NumHeads, t.DFf));
                shapes.Add(new("lm decoder", Output, t.DModel, t.NumDecoderLayers ?? t.NumLayers, t.NumHeads, t.DFf, t.VocabSize));
            }
            else
                shapes.Add(new("lm", queries + Text + Output, t.HiddenSize, t.NumHiddenLayers, t.NumAttentionHeads,
                    t.ModelType == "opt" ? t.FfnDim : t.IntermediateSize, t.VocabSize));
            return shapes;
        }
    }
    public override string ConfigJson() => Config.ToJson();
    public override NllReduction CandidateReduction => Config.DecoderOnly ? NllReduction.MeanOverPaddedLength : NllReduction.Sum;
    public override string? PeftTaskType => Config.DecoderOnly ? "CAUSAL_LM" : "SEQ_2_SEQ_LM";
    public override IReadOnlyList<string> PublishedContext => new[] { ForwardContext.VisualFeatures };

    /// <summary>The parts in HF order. The towers (ViT, LM) stay frozen in the Q-Former PEFT recipes.</summary>
    public override IReadOnlyList<ParameterGroup> ParameterGroups { get; } = new ParameterGroup[]
    {
        new("vision", new[] { "vision_model" }, FrozenTower: true),
        new("qformer", new[] { "qformer", "query_tokens" }),
        new("connector", new[] { "language_projection" }),
        new("language_model", new[] { "language_model" }, FrozenTower: true),
    };

    internal static Tensor InitNormal(Tensor t, double std = 0.02)
    {
        if (t.device_type != DeviceType.META) using (torch.no_grad()) t.normal_(0, std);
        return t;
    }
    public LanguageModel LanguageModel => language_model ?? throw new InvalidOperationException("the language model was not built");
    public BlipVisionModel VisionModel => vision_model ?? throw new InvalidOperationException("the vision model was not built");

    /// <summary>Image and instruction → projected query tokens [B, Q, D], with the intermediates.</summary>
    public (Tensor Vision, Tensor QueryOutput, Tensor Projected) EncodeImage(Tensor pixelValues, Tensor? qformerInputIds, Tensor? qformerAttentionMask)
    {
        using var scope = torch.NewDisposeScope();
        var image = VisionModel.call(pixelValues);                                                   // [B, 1 + P, Hv]
        var queries = query_tokens.expand(image.shape[0], -1, -1).to(image.dtype);                   // [B, Q, Hq]
        var hidden = qformer.call(new QFormerInputs(queries, image, Config.IsInstructBlip ? qformerInputIds : null, qformerAttentionMask));
        var queryOutput = hidden[.., ..(int)Config.NumQueryTokens];                                   // [B, Q, Hq]
        var projected = language_projection.call(queryOutput);                                       // [B, Q, D]
        Context.Publish(ForwardContext.VisualFeatures, projected);                                   // x_v: the visual tokens the LM sees
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
        using var published = Context.Begin();
        if (Config.IsInstructBlip && input.QFormerInputIds is null) throw new BadInputException("InstructBLIP inputs need 'qformer_input_ids'");
        var (image, queryOutput, projected) = EncodeImage(input.PixelValues, input.QFormerInputIds, input.QFormerAttentionMask);
        var (embeds, mask) = AssembleInputs(projected, input.InputIds, input.AttentionMask);
        var logits = LanguageModel.Logits(embeds, mask, input.Labels, input.DecoderInputIds, input.DecoderAttentionMask);
        var loss = input.Labels is null ? null : LanguageModel.LabelLoss(logits, input.Labels);
        var intermediates = new Dictionary<string, Tensor>
        {
            ["vision_last_hidden_state"] = image.MoveToOuterDisposeScope(),
            ["qformer_query_output"] = queryOutput.MoveToOuterDisposeScope(),
            ["language_projection_output"] = projected.MoveToOuterDisposeScope(),
        };
        return new VisionLanguageOutput(logits.MoveToOuterDisposeScope(), loss?.MoveToOuterDisposeScope(), projected, intermediates);
    }

    public override Tensor CandidateTokenNll(VisionLanguageInputs candidates)
    {
        using var scope = torch.NewDisposeScope();
        using var published = Context.Begin();
        var labels = candidates.Labels ?? throw new ArgumentException("candidate batches carry the candidates as labels");
        long n = candidates.InputIds.shape[0];
        var (_, _, projected) = EncodeImage(candidates.PixelValues, candidates.QFormerInputIds, candidates.QFormerAttentionMask);
        var projectedN = projected.expand(n, -1, -1);                                                // one image, n candidates
        Context.Publish(ForwardContext.VisualFeatures, projectedN);
        var (embeds, mask) = AssembleInputs(projectedN, candidates.InputIds, candidates.AttentionMask);
        var logits = LanguageModel.Logits(embeds, mask, labels);
        var (predicted, targets) = LanguageModel.AlignWithLabels(logits, labels);
        return TokenNll(predicted, targets).MoveToOuterDisposeScope();
    }

    /// <summary>The context stays published while the decoder runs: generation steps call the LM again.</summary>
    public override IncrementalDecoder StartDecoding(VisionLanguageInputs prompt)
    {
        var (_, _, projected) = EncodeImage(prompt.PixelValues, prompt.QFormerInputIds, prompt.QFormerAttentionMask);
        var (embeds, mask) = AssembleInputs(projected, prompt.InputIds, prompt.AttentionMask);
        return LanguageModel.StartDecoding(embeds, mask);
    }

    public override Tensor EmbedTokens(Tensor ids) => LanguageModel.EmbedTokens(ids);

    public override void CheckInputs(VisionLanguageInputs x)
    {
        long batch = InputChecks.Pixels(x.PixelValues, Config.Vision);
        InputChecks.Ids("input_ids", x.InputIds, batch, Config.Text.VocabSize);
        InputChecks.Ids("qformer_input_ids", x.QFormerInputIds, batch, Config.QFormer.VocabSize);
        InputChecks.Ids("decoder_input_ids", x.DecoderInputIds, batch, Config.Text.VocabSize);
        InputChecks.Ids("labels", x.Labels, batch, Config.Text.VocabSize, allowIgnore: true);
        InputChecks.Mask("attention_mask", x.AttentionMask, x.InputIds);
        InputChecks.Mask("qformer_attention_mask", x.QFormerAttentionMask, x.QFormerInputIds);
        InputChecks.Mask("decoder_attention_mask", x.DecoderAttentionMask, x.DecoderInputIds);
        if (Config.DecoderOnly && x.Labels is not null && x.Labels.shape[1] != x.InputIds.shape[1])
            throw new BadInputException($"labels must cover input_ids ([{batch}, {x.InputIds.shape[1]}]), got [{string.Join(", ", x.Labels.shape)}]");
    }
}
