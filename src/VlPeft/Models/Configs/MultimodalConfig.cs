using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Models.Configs;

/// <summary>
/// Blip2Config / InstructBlipConfig: nested vision_config, qformer_config, text_config plus the
/// number of query tokens. <see cref="ModelType"/> is "blip-2" or "instructblip".
/// </summary>
public sealed record MultimodalConfig
{
    public string ModelType { get; init; } = "instructblip";
    public int NumQueryTokens { get; init; } = 32;
    public VisionConfig Vision { get; init; } = new();
    public QFormerConfig QFormer { get; init; } = new();
    public TextConfig Text { get; init; } = new();

    public bool IsInstructBlip => ModelType == "instructblip";
    public bool DecoderOnly => !Text.IsEncoderDecoder;

    /// <summary>Parses a HF config.json text.</summary>
    public static MultimodalConfig Parse(string json, string file)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new BadInputException("config.json is not a JSON object", file);
        }
        catch (JsonException e)
        {
            throw new BadInputException($"config.json is not valid JSON: {e.Message}", file);
        }
        string modelType = root["model_type"]?.GetValue<string>() ?? throw new BadInputException("config.json has no model_type", file);
        if (modelType is not ("blip-2" or "instructblip"))
            throw new BadInputException($"model_type '{modelType}' is not supported (blip-2 and instructblip are)", file);
        var vision = HfJson.Read<VisionConfig>(root["vision_config"], "vision_config", file);
        var qformer = HfJson.Read<QFormerConfig>(root["qformer_config"], "qformer_config", file) with { EncoderHiddenSize = vision.HiddenSize };
        var text = HfJson.Read<TextConfig>(root["text_config"], "text_config", file);
        if (text.ModelType is not ("t5" or "llama" or "opt"))
            throw new BadInputException($"text_config.model_type '{text.ModelType}' is not supported (t5, llama, opt are)", file);
        return new MultimodalConfig
        {
            ModelType = modelType,
            NumQueryTokens = root["num_query_tokens"]?.GetValue<int>() ?? 32,
            Vision = vision,
            QFormer = qformer,
            Text = text,
        };
    }

    public static MultimodalConfig Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new BadInputException("config.json not found", file);
        return Parse(File.ReadAllText(file), file);
    }

    /// <summary>Writes the config in HF's layout (nested configs with snake_case keys).</summary>
    public string ToJson()
    {
        var root = new JsonObject
        {
            ["model_type"] = ModelType,
            ["num_query_tokens"] = NumQueryTokens,
            ["use_decoder_only_language_model"] = DecoderOnly,
            ["vision_config"] = JsonSerializer.SerializeToNode(Vision, HfJson.Options),
            ["qformer_config"] = JsonSerializer.SerializeToNode(QFormer, HfJson.Options),
            ["text_config"] = JsonSerializer.SerializeToNode(Text, HfJson.Options),
        };
        return root.ToJsonString(HfJson.Options);
    }
}
