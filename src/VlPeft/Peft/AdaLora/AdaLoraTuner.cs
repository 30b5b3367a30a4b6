using System.Text.Json;
using TorchSharp;
using VlPeft.Nn;
using static TorchSharp.torch;

namespace VlPeft.Peft.AdaLora;

/// <summary>
/// AdaLoRA as HF PEFT's AdaLoraModel: SVD-form adapters, the orthogonal penalty in the loss, the rank
/// allocator after every optimizer step, its running state in checkpoints, and saved tensors sliced to
/// the learned rank pattern (ranknum is a buffer: never trained, never saved).
/// </summary>
public sealed class AdaLoraTuner : PeftTuner
{
    RankAllocator? allocator;
    List<AdaLoraAdapter> adapters = new();

    public AdaLoraTuner(AdaLoraConfig config, string adapterName) : base(config, adapterName) { }

    AdaLoraConfig Ada => (AdaLoraConfig)Config;
    bool Training => !Config.InferenceMode;

    public override LinearAdapter CreateLinearAdapter(string path, Linear layer) =>
        new AdaLoraAdapter(AdapterName, layer, CheckedRank(path, layer, Ada.InitR, "init_r"), Ada.Scaling, Ada.LoraDropout);

    public override void OnAttached(IReadOnlyList<AttachedTarget> targets)
    {
        var modules = targets.Select(t => (t.Path, (AdaLoraAdapter)t.LinearAdapter!)).ToList();
        if (Ada.RankPattern != null)
            foreach (var (path, adapter) in modules)
                if (Ada.RankPattern.TryGetValue($"{path}.lora_E", out var keep)) adapter.ResizeTo(keep);
        adapters = modules.Select(m => m.Item2).ToList();
        allocator = new RankAllocator(Ada, modules);
    }

    public RankAllocator Allocator => allocator ?? throw new InvalidOperationException("the AdaLoRA adapter is not attached");

    public override Tensor? ExtraLoss() =>
        Training && Ada.OrthRegWeight > 0 ? Ada.OrthRegWeight * RankAllocator.OrthogonalPenalty(adapters) : null;

    public override void AfterOptimizerStep(int globalStep)
    {
        if (Training) Allocator.UpdateAndAllocate(globalStep);
    }

    public override TunerState? ExportState() =>
        Training ? new TunerState(Allocator.ExportState(), JsonSerializer.Serialize(Allocator.RankPattern)) : null;

    public override void ImportState(TunerState state) =>
        Allocator.ImportState(state.Tensors, JsonSerializer.Deserialize<Dictionary<string, bool[]>?>(state.Json));

    public override bool IsBufferKind(string containerKind) => containerKind == AdaLoraAdapter.RankNumKind;

    public override PeftConfig EffectiveConfig => allocator?.RankPattern is { } pattern ? Ada with { RankPattern = pattern } : Config;

    /// <summary>HF saves A, E, B cut to the kept ranks of rank_pattern (tensors already at their pruned size stay).</summary>
    public override Tensor SavedValue(string key, Tensor value)
    {
        var pattern = ((AdaLoraConfig)EffectiveConfig).RankPattern;
        if (pattern is null) return value;
        bool isA = key.EndsWith(".lora_A"), isE = key.EndsWith(".lora_E"), isB = key.EndsWith(".lora_B");
        if (!isA && !isE && !isB) return value;
        string module = key[PeftFiles.Prefix.Length..key.LastIndexOf('.')];
        if (!pattern.TryGetValue(module + ".lora_E", out var keep)) return value;
        long currentRank = isB ? value.shape[1] : value.shape[0];
        if (currentRank != Ada.InitR) return value;
        var index = torch.tensor(Enumerable.Range(0, keep.Length).Where(i => keep[i]).Select(i => (long)i).ToArray());
        return value.index_select(isB ? 1 : 0, index);
    }

    public override IReadOnlyDictionary<string, int>? Ranks() => allocator?.FinalRanks();
}
