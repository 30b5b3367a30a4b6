using VlPeft.Nn;

namespace VlPeft.Peft.LoHa;

/// <summary>LoHa on linear layers, as HF PEFT's LoHaModel.</summary>
public sealed class LoHaTuner : PeftTuner
{
    public LoHaTuner(LoHaConfig config, string adapterName) : base(config, adapterName) { }

    public override LinearAdapter CreateLinearAdapter(string path, Linear layer)
    {
        var config = (LoHaConfig)Config;
        var (rank, alpha) = config.ForModule(path);
        CheckedRank(path, layer, rank);
        return new LoHaAdapter(AdapterName, layer, rank, alpha, config.InitWeights);
    }
}
