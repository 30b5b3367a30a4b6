using System.Text.Json;

namespace VlPeft.Evaluation;

/// <summary>
/// Prediction files as users produce them: ScienceQA/IconQA objects keyed by id (optionally inside
/// "results", as the official result files), VQA/VizWiz/caption results as JSON arrays.
/// Unknown ids, duplicates and wrong shapes are errors naming the file and the id.
/// </summary>
public static class PredictionFile
{
    /// <summary>{id: value} or {"results": {id: value}}; values are kept as JSON.</summary>
    public static Dictionary<string, JsonElement> ReadKeyed(string path)
    {
        using var doc = Parse(path);
        var root = doc.RootElement;
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("results", out var results) && results.ValueKind == JsonValueKind.Object)
            root = results;
        if (root.ValueKind != JsonValueKind.Object) throw new BadInputException("predictions must be a JSON object {id: prediction} (or {\"results\": {…}})", path);
        var map = new Dictionary<string, JsonElement>();
        foreach (var p in root.EnumerateObject())
            if (!map.TryAdd(p.Name, p.Value.Clone())) throw new BadInputException($"prediction for '{p.Name}' appears twice", path);
        return map;
    }

    /// <summary>[{idField: …, valueField: str}, …] → id → value.</summary>
    public static Dictionary<string, string> ReadList(string path, string idField, string valueField)
    {
        using var doc = Parse(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Array) throw new BadInputException($"predictions must be a JSON array of {{\"{idField}\": …, \"{valueField}\": …}}", path);
        var map = new Dictionary<string, string>();
        int index = 0;
        foreach (var item in doc.RootElement.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty(idField, out var id) || !item.TryGetProperty(valueField, out var value)
                || value.ValueKind != JsonValueKind.String)
                throw new BadInputException($"prediction #{index} lacks \"{idField}\" or a string \"{valueField}\"", path);
            string key = id.ValueKind == JsonValueKind.String ? id.GetString()! : id.GetRawText();
            if (!map.TryAdd(key, value.GetString()!)) throw new BadInputException($"prediction for {idField} {key} appears twice", path);
            index++;
        }
        return map;
    }

    /// <summary>
    /// Checks predictions against the evaluated ids: unknown ids are errors; missing ids are errors
    /// unless <paramref name="allowMissing"/> (they then count as wrong). Returns the missing ids.
    /// </summary>
    public static IReadOnlyList<string> CheckIds<T>(IReadOnlyDictionary<string, T> predictions, IEnumerable<string> expected, bool allowMissing, string path)
    {
        var expectedSet = expected.ToHashSet();
        var unknown = predictions.Keys.FirstOrDefault(k => !expectedSet.Contains(k));
        if (unknown != null) throw new BadInputException($"prediction for unknown id '{unknown}' (not in the evaluated split)", path);
        var missing = expectedSet.Where(id => !predictions.ContainsKey(id)).OrderBy(id => id, StringComparer.Ordinal).ToList();
        if (missing.Count > 0 && !allowMissing)
            throw new BadInputException($"{missing.Count} id(s) have no prediction, e.g. '{missing[0]}' (use --allow-missing to count them as wrong)", path);
        return missing;
    }

    static JsonDocument Parse(string path)
    {
        if (!File.Exists(path)) throw new BadInputException("predictions file not found", path);
        try
        {
            return JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new BadInputException($"predictions file is not valid JSON: {e.Message}", path);
        }
    }
}
