using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlPeft.Peft;

/// <summary>
/// Reads an <c>adapter_config.json</c> object field by field, remembering what was consumed so the
/// rest can be reported: HF PEFT drops unknown keys with a warning, and so do we.
/// </summary>
sealed class ConfigJson
{
    // HF PEFT fields VlPeft accepts but does not implement: silent when null/false/empty, else a warning.
    static readonly HashSet<string> AcceptedInert = new()
    {
        "auto_mapping", "peft_version", "megatron_config", "megatron_core", "loftq_config", "eva_config",
        "corda_config", "layer_replication", "trainable_token_indices", "target_parameters", "use_qalora",
        "qalora_group_size", "runtime_config", "ensure_weight_tying", "alora_invocation_tokens", "arrow_config",
        "exclude_modules_pattern", "lora_ga_config", "use_bdlora", "bdlora_config",
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

    /// <summary>Reports every key nobody asked for.</summary>
    public void WarnAboutTheRest()
    {
        foreach (var (key, value) in json)
        {
            if (consumed.Contains(key)) continue;
            if (AcceptedInert.Contains(key))
            {
                if (!IsEmpty(value)) Log.Warning($"{File}: '{key}' is not supported by VlPeft and is ignored");
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
