using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Models.Configs;

/// <summary>Reads HF config.json objects into typed configs (snake_case keys, unknown keys ignored).</summary>
static class HfJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowReadingFromString,
        WriteIndented = true,
    };

    public static T Read<T>(JsonNode? node, string what, string file) where T : new()
    {
        if (node is null) return new T();
        try
        {
            return node.Deserialize<T>(Options) ?? new T();
        }
        catch (JsonException e)
        {
            throw new BadInputException($"{what} in config.json does not have the expected fields: {e.Message}", file);
        }
    }
}
