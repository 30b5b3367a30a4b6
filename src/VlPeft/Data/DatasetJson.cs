using System.Text.Json;

namespace VlPeft.Data;

/// <summary>JSON reading for dataset files: clear errors naming the file and the record.</summary>
static class DatasetJson
{
    public static JsonDocument Parse(string path)
    {
        if (!File.Exists(path)) throw new BadInputException("file not found", path);
        try
        {
            var bytes = File.ReadAllBytes(path);
            // JsonDocument accepts malformed UTF-8 inside strings and fails only when one is read: check it all up front.
            if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new BadInputException("not valid UTF-8 text", path);
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new BadInputException($"not valid JSON: {e.Message}", path);
        }
    }

    public static string String(JsonElement record, string field, string id, string path, bool required = true)
    {
        if (!record.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
            return required ? throw Bad(id, $"missing field '{field}'", path) : "";
        if (value.ValueKind != JsonValueKind.String) throw Bad(id, $"field '{field}' must be a string", path);
        return Text(value, field, id, path);
    }

    /// <summary>A string value; an escape that encodes no valid text (a lone surrogate) is the record's error.</summary>
    static string Text(JsonElement value, string field, string id, string path)
    {
        try
        {
            return value.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw Bad(id, $"field '{field}' holds an escape that is not valid text", path);
        }
    }

    public static string? NullableString(JsonElement record, string field, string id, string path) =>
        record.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null ? String(record, field, id, path) : null;

    public static int Int(JsonElement record, string field, string id, string path)
    {
        if (!record.TryGetProperty(field, out var value)) throw Bad(id, $"missing field '{field}'", path);
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int i)) return i;
        if (value.ValueKind == JsonValueKind.String && int.TryParse(value.GetString(), out i)) return i;
        throw Bad(id, $"field '{field}' must be an integer", path);
    }

    /// <summary>The 0-based "answer" field, checked against the number of choices.</summary>
    public static int AnswerIndex(JsonElement record, int choiceCount, string id, string path)
    {
        int answer = Int(record, "answer", id, path);
        if (answer < 0 || answer >= choiceCount) throw Bad(id, $"answer {answer} is not an index into its {choiceCount} choices", path);
        return answer;
    }

    public static List<string> Strings(JsonElement record, string field, string id, string path)
    {
        if (!record.TryGetProperty(field, out var value) || value.ValueKind != JsonValueKind.Array)
            throw Bad(id, $"field '{field}' must be a list of strings", path);
        var list = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String) throw Bad(id, $"field '{field}' must hold only strings", path);
            list.Add(Text(item, field, id, path));
        }
        return list;
    }

    public static BadInputException Bad(string id, string problem, string path) => new($"record {id}: {problem}", path);
}
