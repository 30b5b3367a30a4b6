using System.Text.Json.Nodes;
using TorchSharp;
using VlPeft.Imaging;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Language;
using VlPeft.Models.Multimodal;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VlPeft.Tests.Plugins;

/// <summary>
/// A model family that exists only in the test project: image → mean colour → one visual token (a linear
/// layer) → prepended to a tiny LLaMA (the library's). It plugs in through <see cref="ModelFamilies"/>.
/// </summary>
sealed class ToyFamily : ModelFamily
{
    public const string Type = "toy-vlm";
    public override IReadOnlyList<string> ModelTypes { get; } = new[] { Type };

    public override VisionLanguageModel Create(string configJson, string file, ModelBuildOptions? options = null)
    {
        var root = JsonNode.Parse(configJson)!.AsObject();
        return new ToyModel(root["hidden_size"]!.GetValue<int>(), root["num_hidden_layers"]!.GetValue<int>(), options?.Device);
    }

    public override VisionLanguageProcessor LoadProcessor(VisionLanguageModel model, string directory) => new ToyProcessor();

    public static string ConfigJson(int hidden, int layers) =>
        new JsonObject { ["model_type"] = Type, ["hidden_size"] = hidden, ["num_hidden_layers"] = layers }.ToJsonString();
}

sealed class ToyModel : VisionLanguageModel
{
    readonly VlPeft.Nn.Linear visual_projection;
    readonly LlamaModel language_model;
    readonly int hidden, layers;

    public ToyModel(int hidden, int layers, Device? device) : base(ToyFamily.Type)
    {
        this.hidden = hidden;
        this.layers = layers;
        visual_projection = new VlPeft.Nn.Linear(3, hidden, device: device);
        language_model = new LlamaModel(new TextConfig
        {
            ModelType = "llama", VocabSize = ToyProcessor.VocabSize, HiddenSize = hidden, IntermediateSize = 2 * hidden,
            NumHiddenLayers = layers, NumAttentionHeads = 2, MaxPositionEmbeddings = 512,
        }, device);
        RegisterComponents();
    }

    public override string ModelType => ToyFamily.Type;
    public override string ConfigJson() => ToyFamily.ConfigJson(hidden, layers);
    public override IReadOnlyList<string> PublishedContext => new[] { ForwardContext.VisualFeatures };
    public override IReadOnlyList<ParameterGroup> ParameterGroups { get; } = new ParameterGroup[]
    {
        new("connector", new[] { "visual_projection" }),
        new("language_model", new[] { "language_model" }, FrozenTower: true),
    };

    /// <summary>[B, 3, H, W] → one visual token [B, 1, D], published as x_v.</summary>
    Tensor VisualToken(Tensor pixels)
    {
        var token = visual_projection.call(pixels.mean(new long[] { 2, 3 })).unsqueeze(1);
        Context.Publish(ForwardContext.VisualFeatures, token);
        return token;
    }

    (Tensor Embeds, Tensor Mask) Assemble(Tensor visual, Tensor ids, Tensor? mask)
    {
        var embeds = torch.cat(new[] { visual, language_model.EmbedTokens(ids) }, 1);
        mask ??= torch.ones_like(ids);
        return (embeds, torch.cat(new[] { torch.ones(ids.shape[0], 1, dtype: mask.dtype), mask }, 1));
    }

    public override VisionLanguageOutput forward(VisionLanguageInputs input)
    {
        using var published = Context.Begin();
        var visual = VisualToken(input.PixelValues);
        var (embeds, mask) = Assemble(visual, input.InputIds, input.AttentionMask);
        var logits = language_model.Logits(embeds, mask, input.Labels);
        Tensor? loss = null;
        if (input.Labels is not null)
        {
            var (predicted, targets) = language_model.AlignWithLabels(logits, input.Labels);
            loss = F.cross_entropy(predicted.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: -100);
        }
        return new VisionLanguageOutput(logits, loss, visual, new Dictionary<string, Tensor> { ["visual_token"] = visual });
    }

    public override Tensor CandidateTokenNll(VisionLanguageInputs candidates)
    {
        using var published = Context.Begin();
        long n = candidates.InputIds.shape[0];
        var visual = VisualToken(candidates.PixelValues).expand(n, -1, -1);
        Context.Publish(ForwardContext.VisualFeatures, visual);
        var (embeds, mask) = Assemble(visual, candidates.InputIds, candidates.AttentionMask);
        var (predicted, targets) = language_model.AlignWithLabels(language_model.Logits(embeds, mask, candidates.Labels), candidates.Labels!);
        return TokenNll(predicted, targets);
    }

    public override IncrementalDecoder StartDecoding(VisionLanguageInputs prompt)
    {
        var (embeds, mask) = Assemble(VisualToken(prompt.PixelValues), prompt.InputIds, prompt.AttentionMask);
        return language_model.StartDecoding(embeds, mask);
    }

    public override Tensor EmbedTokens(Tensor ids) => language_model.EmbedTokens(ids);
}

/// <summary>Characters as tokens (0 = pad, 1 = EOS), 8×8 images through the library's image pipeline.</summary>
sealed class ToyProcessor : VisionLanguageProcessor
{
    public const int VocabSize = 98;
    readonly ImagePipeline images = new(8, ImageNormalization.Clip);

    static int[] Ids(string text) => text.Select(c => c is >= ' ' and <= '~' ? c - ' ' + 2 : 2).ToArray();
    static int[] Answer(string text) => Ids(text).Append(1).ToArray();

    Tensor Pixels(IEnumerable<string?> paths) =>
        torch.stack(paths.Select(p => p is null ? torch.zeros(3, 8, 8) : images.Eval(p)).ToArray());

    public override VisionLanguageInputs TrainingBatch(IReadOnlyList<TextExample> examples, Random? augment = null)
    {
        var lm = LmBatch.Build(examples.Select(e => Ids(e.Instruction)).ToList(), examples.Select(e => Answer(e.Target)).ToList(), decoderOnly: true, padId: 0);
        return new VisionLanguageInputs(Pixels(examples.Select(e => e.ImagePath)), lm.InputIds, lm.AttentionMask, Labels: lm.Labels);
    }

    public override VisionLanguageInputs CandidateBatch(string? imagePath, string instruction, IReadOnlyList<string> candidates)
    {
        var lm = LmBatch.Build(candidates.Select(_ => Ids(instruction)).ToList(), candidates.Select(Answer).ToList(), decoderOnly: true, padId: 0, int.MaxValue);
        return new VisionLanguageInputs(Pixels(new[] { imagePath }), lm.InputIds, lm.AttentionMask, Labels: lm.Labels);
    }

    public override VisionLanguageInputs PromptBatch(string? imagePath, string instruction) =>
        new(Pixels(new[] { imagePath }), torch.tensor(Ids(instruction).Select(i => (long)i).ToArray()).unsqueeze(0));

    public override int? EosId => 1;

    public override string Decode(IReadOnlyList<int> ids) => new(ids.Where(i => i >= 2).Select(i => (char)(i - 2 + ' ')).ToArray());
}
