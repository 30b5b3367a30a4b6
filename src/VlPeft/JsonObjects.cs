using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft;

/// <summary>Parses a JSON file's text that must be an object, with one clear error naming the file otherwise.</summary>
public static class JsonObjects
{
    /// <param name="what">How the file is called in the message ("config.json", "adapter config").</param>
    public static JsonObject Parse(string text, string file, string what)
    {
        try
        {
            return JsonNode.Parse(text) as JsonObject ?? throw new BadInputException($"{what} is not a JSON object", file);
        }
        catch (JsonException e)
        {
            throw new BadInputException($"{what} is not valid JSON: {e.Message}", file);
        }
    }
}
