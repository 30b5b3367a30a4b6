using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Peft;

/// <summary>
/// Reads an <c>adapter_config.json</c> object field by field, remembering what was consumed so the
/// rest can be reported: HF PEFT drops unknown keys with a warning, and so do we.
/// </summary>
public sealed class ConfigJson
{
    // HF PEFT fields VlPeft accepts but does not implement: silent at their HF defaults
    // (null/false/empty, or the listed value), else a warning that they are ignored.
    static readonly Dictionary<string, string?> AcceptedInert = new()
    {
        ["auto_mapping"] = null, ["peft_version"] = null, ["megatron_config"] = null, ["megatron_core"] = "megatron.core",
        ["loftq_config"] = null, ["eva_config"] = null, ["corda_config"] = null, ["layer_replication"] = null,
        ["trainable_token_indices"] = null, ["target_parameters"] = null, ["use_qalora"] = null,
        ["qalora_group_size"] = "16", ["runtime_config"] = null, ["ensure_weight_tying"] = null,
        ["alora_invocation_tokens"] = null, ["arrow_config"] = null, ["lora_ga_config"] = null,
    };

    readonly JsonObject json;
    readonly HashSet<string> consumed = new();

    public ConfigJson(JsonObject json, string file)
    {
        this.json = json;
        File = file;
    }

    public string File { get; }

    public JsonNode? Node(string key)
    {
        consumed.Add(key);
        return json[key];
    }

    public T Get<T>(string key, T fallback)
    {
        var node = Node(key);
        if (node is null) return fallback;
        try
        {
            return node.Deserialize<T>()!;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new BadInputException($"adapter config field '{key}' has an unexpected value {node.ToJsonString()} (expected {typeof(T).Name})", File);
        }
    }

    /// <summary>Refuses the first key nobody asked for (experiment files: a typo must not pass silently).</summary>
    public void RejectTheRest()
    {
        foreach (var (key, _) in json)
            if (!consumed.Contains(key))
                throw new BadInputException($"unknown key '{key}' for peft_type {json["peft_type"]?.ToString() ?? "?"}", File);
    }

    /// <summary>Reports every key nobody asked for.</summary>
    public void WarnAboutTheRest()
    {
        foreach (var (key, value) in json)
        {
            if (consumed.Contains(key)) continue;
            if (AcceptedInert.TryGetValue(key, out var hfDefault))
            {
                // auto_mapping and peft_version are bookkeeping HF writes itself; never worth a warning.
                bool harmless = key is "auto_mapping" or "peft_version" || IsEmpty(value)
                    || (hfDefault != null && value is JsonValue v && v.ToJsonString().Trim('"') == hfDefault);
                if (!harmless) Log.Warning($"{File}: '{key}' is not supported by VlPeft and is ignored");
            }
            else Log.Warning($"{File}: unknown key '{key}' in adapter config is ignored");
        }
    }

    static bool IsEmpty(JsonNode? value) => value switch
    {
        null => true,
        JsonValue v when v.TryGetValue(out bool b) => !b,
        JsonObject o => o.Count == 0,
        JsonArray a => a.Count == 0,
        _ => false,
    };
}
