using VlPeft.Nn;

namespace VlPeft.Peft.Lora;

/// <summary>LoRA and DoRA (use_dora) on linear layers, as HF PEFT's LoraModel.</summary>
public sealed class LoraTuner : PeftTuner
{
    public LoraTuner(LoraConfig config, string adapterName) : base(config, adapterName) { }

    LoraConfig Lora => (LoraConfig)Config;

    public override LinearAdapter CreateLinearAdapter(string path, Linear layer)
    {
        var (rank, alpha) = Lora.ForModule(path);
        CheckedRank(path, layer, rank);
        // "eva" is a data-driven initialisation; once saved, the adapter is a plain LoRA whose weights come from the file.
        string init = Lora.InitLoraWeights == "eva" ? "true" : Lora.InitLoraWeights;
        return Lora.UseDora
            ? new DoraAdapter(AdapterName, layer, rank, alpha, Lora.LoraDropout, Lora.UseRslora, init, Lora.LoraBias)
            : new LoraAdapter(AdapterName, layer, rank, alpha, Lora.LoraDropout, Lora.UseRslora, init, Lora.LoraBias);
    }

    /// <summary>HF saves DoRA's magnitude without the trailing <c>.weight</c>.</summary>
    public override string SavedKey(string key) =>
        key.EndsWith($".{DoraAdapter.MagnitudeKind}.weight", StringComparison.Ordinal) ? key[..^".weight".Length] : key;
}
