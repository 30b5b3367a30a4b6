using System.Text.Json.Nodes;

namespace VlPeft.Peft;

/// <summary>
/// HF PEFT's way of naming modules in <c>target_modules</c> / <c>exclude_modules</c>: either one
/// regex string that must fully match the dotted path, or a list of names each matching the path
/// exactly or as a suffix on a dot boundary (so <c>v</c> does not match <c>qkv</c>), or the
/// special string <c>all-linear</c>.
/// </summary>
public sealed record ModuleSelector
{
    public const string AllLinearKeyword = "all-linear";

    ModuleSelector(string? regex, IReadOnlyList<string>? names)
    {
        Regex = regex;
        Names = names;
    }

    /// <summary>The regex form (null for the list form).</summary>
    public string? Regex { get; }
    /// <summary>The list form (null for the regex form).</summary>
    public IReadOnlyList<string>? Names { get; }
    public bool IsAllLinear => Regex == AllLinearKeyword;

    public static ModuleSelector FromRegex(string regex) => new(regex, null);
    public static ModuleSelector FromNames(params string[] names) => new(null, names);
    public static ModuleSelector AllLinear { get; } = new(AllLinearKeyword, null);

    /// <summary>Does the selector pick the module at <paramref name="path"/>? (layers_to_transform is separate.)</summary>
    public bool Matches(string path)
    {
        if (Regex != null)
            return !IsAllLinear && System.Text.RegularExpressions.Regex.IsMatch(path, $"^(?:{Regex})$");
        return Names!.Any(name => path == name || path.EndsWith("." + name, StringComparison.Ordinal));
    }

    public JsonNode ToJson() => Regex != null
        ? JsonValue.Create(Regex)!
        : new JsonArray(Names!.OrderBy(n => n, StringComparer.Ordinal).Select(n => (JsonNode)JsonValue.Create(n)!).ToArray());

    public static ModuleSelector? FromJson(JsonNode? node, string field) => node switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => FromRegex(s!),
        JsonArray a => FromNames(a.Select(x => x?.GetValue<string>() ?? throw new BadInputException($"'{field}' holds a null name")).ToArray()),
        _ => throw new BadInputException($"'{field}' must be a string (regex) or a list of module names"),
    };

    public override string ToString() => Regex ?? $"[{string.Join(", ", Names!)}]";
}
