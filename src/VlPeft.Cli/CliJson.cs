using System.Text.Json;

namespace VlPeft.Cli;

static class CliJson
{
    /// <summary>snake_case keys, indented: what Python users and jq scripts expect.</summary>
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
    };
}
