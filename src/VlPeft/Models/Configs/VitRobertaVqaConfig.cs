using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Models.Configs;

/// <summary>ViT + RoBERTa VQA classifier (model_type vit_roberta_vqa), models.md §10.1.</summary>
public sealed record VitRobertaVqaConfig
{
    public const string Type = "vit_roberta_vqa";

    public VisionConfig Vision { get; init; } = RoutingPipelineConfig.VitBase;
    public RobertaConfig Text { get; init; } = new();
    /// <summary>The answer vocabulary by label id (HF's id2label; 3,129 answers for VQAv2).</summary>
    public IReadOnlyList<string> Id2Label { get; init; } = Array.Empty<string>();
    /// <summary>Question tokens including the special ones (the paper: 20, or 19 with the visual prefix).</summary>
    public int MaxQuestionTokens { get; init; } = 19;

    public int NumLabels => Id2Label.Count;

    public static VitRobertaVqaConfig Parse(string json, string file)
    {
        var root = RoutingPipelineConfig.Root(json, file, Type);
        var config = new VitRobertaVqaConfig
        {
            Vision = RoutingPipelineConfig.Vision(root, file),
            Text = HfJson.Read<RobertaConfig>(root["text_config"], "text_config", file),
            Id2Label = ReadLabels(root, file),
            MaxQuestionTokens = root["max_question_tokens"]?.GetValue<int>() ?? 19,
        };
        config.Text.Check(file);
        RoutingPipelineConfig.CheckWidths(config.Vision.HiddenSize, config.Text.HiddenSize, file);
        ConfigBounds.Check("max_question_tokens", config.MaxQuestionTokens, config.Text.MaxPositionEmbeddings - config.Text.PadTokenId - 2, file);
        return config;
    }

    /// <summary>{"0": "", "1": "yes", …} with every id from 0 to n − 1 (HF's id2label), or HF's LABEL_i names for num_labels.</summary>
    static IReadOnlyList<string> ReadLabels(JsonObject root, string file)
    {
        if (root["id2label"] is null && root["num_labels"] is JsonValue n && n.TryGetValue(out int count))
        {
            ConfigBounds.Check("num_labels", count, 1 << 20, file);
            return Enumerable.Range(0, count).Select(i => $"LABEL_{i}").ToList();
        }
        if (root["id2label"] is not JsonObject map || map.Count == 0) throw new BadInputException("id2label (or num_labels) must give the classifier's answers", file);
        ConfigBounds.Check("the number of labels", map.Count, 1 << 20, file);
        var labels = new string[map.Count];
        foreach (var (key, value) in map)
        {
            if (!int.TryParse(key, out int id) || id < 0 || id >= labels.Length || labels[id] != null)
                throw new BadInputException($"id2label key '{key}' must be a distinct class id from 0 to {labels.Length - 1}", file);
            labels[id] = value?.GetValue<string>() ?? throw new BadInputException($"id2label['{key}'] must be a string", file);
        }
        return labels;
    }

    public string ToJson() => new JsonObject
    {
        ["model_type"] = Type,
        ["vision_config"] = RoutingPipelineConfig.VisionJson(Vision),
        ["text_config"] = JsonSerializer.SerializeToNode(Text, HfJson.Options),
        ["id2label"] = new JsonObject(Id2Label.Select((label, id) => KeyValuePair.Create(id.ToString(), (JsonNode?)label))),
        ["max_question_tokens"] = MaxQuestionTokens,
    }.ToJsonString(HfJson.Options);
}
