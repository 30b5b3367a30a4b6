using System.Collections.Concurrent;
using VlPeft.Peft.AdaLora;
using VlPeft.Peft.Bottleneck;
using VlPeft.Peft.LoHa;
using VlPeft.Peft.Lora;
using VlPeft.Peft.Routing;

namespace VlPeft.Peft;

/// <summary>
/// The registry of PEFT methods by peft_type (HF PEFT's PEFT_TYPE_TO_CONFIG_MAPPING): each maps an
/// adapter_config.json to its config record, whose <see cref="PeftConfig.CreateTuner"/> builds the tuner.
/// LoRA (with DoRA), AdaLoRA, LoHa, the Bottleneck Adapter / RepAdapter and the routing paper's routed LoRA and adapters are built in; other methods register themselves.
/// </summary>
public static class PeftMethods
{
    static readonly ConcurrentDictionary<string, Func<ConfigJson, PeftConfig>> readers = new();

    static PeftMethods()
    {
        Register("LORA", LoraConfig.Read);
        Register("ADALORA", AdaLoraConfig.Read);
        Register("LOHA", LoHaConfig.Read);
        Register(BottleneckConfig.Type, BottleneckConfig.Read);
        Register(RoutedLoraConfig.Type, RoutedLoraConfig.Read);
        Register(RoutedAdapterConfig.Type, RoutedAdapterConfig.Read);
    }

    /// <param name="peftType">Upper case as HF writes it (matched case-insensitively).</param>
    public static void Register(string peftType, Func<ConfigJson, PeftConfig> read) => readers[peftType.ToUpperInvariant()] = read;

    public static IReadOnlyList<string> PeftTypes => readers.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();

    public static PeftConfig Read(string peftType, ConfigJson json) =>
        readers.TryGetValue(peftType.ToUpperInvariant(), out var read) ? read(json)
            : throw new BadInputException($"peft_type '{peftType}' is not supported (registered: {string.Join(", ", PeftTypes)})", json.File);
}
