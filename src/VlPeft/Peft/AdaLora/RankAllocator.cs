using TorchSharp;
using static TorchSharp.torch;

namespace VlPeft.Peft.AdaLora;

/// <summary>
/// AdaLoRA's budget allocator, as HF PEFT implements it (adalora/layer.py RankAllocator and
/// model.py update_and_allocate): EMA sensitivity Ī and uncertainty Ū of every A/E/B element,
/// triplet scores, a cubic budget schedule, and masking of the lowest-scoring singular values.
/// Call <see cref="UpdateAndAllocate"/> after optimizer.step() and before zero_grad().
/// </summary>
public sealed class RankAllocator
{
    readonly AdaLoraConfig config;
    readonly IReadOnlyList<(string Path, AdaLoraAdapter Adapter)> modules;
    readonly Dictionary<string, Tensor> sensitivity = new(), smoothedSensitivity = new(), uncertainty = new();

    public RankAllocator(AdaLoraConfig config, IReadOnlyList<(string Path, AdaLoraAdapter Adapter)> modules)
    {
        this.config = config;
        this.modules = modules;
        // The sum of the current ranks: a pruned adapter loaded to train on starts from what it kept.
        InitialBudget = modules.Sum(m => (int)m.Adapter.StoredRank);
        TargetBudget = config.TargetR * modules.Count;
    }

    public int InitialBudget { get; }
    public int TargetBudget { get; }

    /// <summary>The latest pattern, keyed like HF's config.rank_pattern (<c>path.lora_E</c>, no adapter name).</summary>
    public IReadOnlyDictionary<string, bool[]>? RankPattern { get; private set; }

    /// <summary>b(t) and whether to mask at step t (HF budget_schedule).</summary>
    public (int Budget, bool Mask) BudgetSchedule(int step)
    {
        int tinit = config.Tinit, tfinal = config.Tfinal, total = config.TotalStep;
        if (step <= tinit) return (InitialBudget, false);
        if (step > total - tfinal) return (TargetBudget, true);
        double mulCoeff = 1 - (double)(step - tinit) / (total - tfinal - tinit);
        int budget = (int)((InitialBudget - TargetBudget) * Math.Pow(mulCoeff, 3) + TargetBudget);
        return (budget, step % config.DeltaT == 0);
    }

    /// <summary>The three phases of HF AdaLoraModel.update_and_allocate.</summary>
    public void UpdateAndAllocate(int globalStep)
    {
        int freezeAt = config.TotalStep - config.Tfinal;
        if (globalStep < freezeAt)
        {
            UpdateImportance();
            var (budget, mask) = BudgetSchedule(globalStep);
            if (mask) RankPattern = MaskToBudget(budget);
        }
        else if (globalStep == freezeAt)
        {
            // Forced mask to the final budget; the pattern is frozen from here on.
            var (budget, _) = BudgetSchedule(globalStep);
            RankPattern = MaskToBudget(budget);
            ResetImportance();
        }
        else if (RankPattern != null)
        {
            MaskUsingRankPattern(RankPattern);
        }
    }

    IEnumerable<(string Key, TorchSharp.Modules.Parameter P)> ScoredParameters()
    {
        foreach (var (path, adapter) in modules)
        {
            yield return ($"{path}.lora_A.{adapter.Name}", adapter.A);
            yield return ($"{path}.lora_B.{adapter.Name}", adapter.B);
            yield return ($"{path}.lora_E.{adapter.Name}", adapter.E);
        }
    }

    /// <summary>I = |θ ⊙ ∇θ|; Ī ← β1·Ī + (1 − β1)·I; Ū ← β2·Ū + (1 − β2)·|I − Ī| (with the updated Ī).</summary>
    public void UpdateImportance()
    {
        using var _ = torch.no_grad();
        // Explicit scalars, held until the loop ends: TorchSharp's `double * tensor` makes a Scalar that nothing
        // references during the native call, and a garbage collection on another thread can finalize it mid-call
        // ("Unknown scalar type", seen once in CI here; dotnet/TorchSharp#1434).
        using Scalar beta1 = config.Beta1, rest1 = 1 - config.Beta1, beta2 = config.Beta2, rest2 = 1 - config.Beta2;
        foreach (var (key, p) in ScoredParameters())
        {
            using var scope = torch.NewDisposeScope();
            var grad = p.grad ?? torch.zeros_like(p);
            var ipt = (p * grad).abs();
            var ema = smoothedSensitivity.TryGetValue(key, out var e) ? e : torch.zeros_like(p);
            var unc = uncertainty.TryGetValue(key, out var u) ? u : torch.zeros_like(p);
            var newEma = ema.mul(beta1) + ipt.mul(rest1);
            var newUnc = unc.mul(beta2) + (ipt - newEma).abs().mul(rest2);
            Store(sensitivity, key, ipt);
            Store(smoothedSensitivity, key, newEma);
            Store(uncertainty, key, newUnc);
        }
    }

    static void Store(Dictionary<string, Tensor> map, string key, Tensor value)
    {
        if (map.TryGetValue(key, out var old) && !ReferenceEquals(old, value)) old.Dispose();
        map[key] = value.DetachFromDisposeScope();
    }

    public void ResetImportance()
    {
        foreach (var map in new[] { sensitivity, smoothedSensitivity, uncertainty })
        {
            foreach (var t in map.Values) t.Dispose();
            map.Clear();
        }
    }

    /// <summary>Ī ⊙ Ū for one parameter (zeros before the first update).</summary>
    public Tensor ElementScore(string key, Tensor like) =>
        smoothedSensitivity.TryGetValue(key, out var ema) ? ema * uncertainty[key] : torch.zeros_like(like);

    /// <summary>S_{k,i} = s(Λ_{k,i}) + mean_j s(Q_{k,i,j}) + mean_j s(P_{k,j,i}), per module.</summary>
    public Dictionary<string, Tensor> TripletScores()
    {
        var scores = new Dictionary<string, Tensor>();
        foreach (var (path, adapter) in modules)
        {
            var a = ElementScore($"{path}.lora_A.{adapter.Name}", adapter.A).mean(new long[] { 1 });
            var b = ElementScore($"{path}.lora_B.{adapter.Name}", adapter.B).mean(new long[] { 0 });
            var e = ElementScore($"{path}.lora_E.{adapter.Name}", adapter.E).view(-1);
            scores[path] = e + a + b;
        }
        return scores;
    }

    /// <summary>The allocator's running state (EMA tensors), for checkpoints: a resumed run must continue it exactly.</summary>
    public Dictionary<string, Tensor> ExportState()
    {
        var state = new Dictionary<string, Tensor>();
        foreach (var (prefix, map) in new[] { ("ipt", sensitivity), ("ema", smoothedSensitivity), ("unc", uncertainty) })
            foreach (var (key, value) in map) state[$"{prefix}/{key}"] = value;
        return state;
    }

    public void ImportState(IReadOnlyDictionary<string, Tensor> state, IReadOnlyDictionary<string, bool[]>? pattern)
    {
        ResetImportance();
        foreach (var (key, value) in state)
        {
            var map = key[..3] switch { "ipt" => sensitivity, "ema" => smoothedSensitivity, _ => uncertainty };
            map[key[4..]] = value.DetachFromDisposeScope();
        }
        RankPattern = pattern;
    }

    /// <summary>Zeroes Λ where S ≤ τ, τ = the (B0 − b)-th smallest score; returns the kept pattern.</summary>
    public Dictionary<string, bool[]> MaskToBudget(int budget)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var scores = TripletScores();
        int k = InitialBudget - budget;
        var pattern = new Dictionary<string, bool[]>();
        // kthvalue needs k ≥ 1; with nothing to prune every triplet is kept.
        double? threshold = k >= 1
            ? torch.kthvalue(torch.cat(modules.Select(m => scores[m.Path]).ToArray()), k, 0).values.ToDouble()
            : null;
        foreach (var (path, adapter) in modules)
        {
            var prune = threshold is double t ? scores[path].le(t) : torch.zeros(scores[path].shape, ScalarType.Bool);
            adapter.E.masked_fill_(prune.view(-1, 1), 0.0);
            pattern[$"{path}.lora_E"] = prune.logical_not().data<bool>().ToArray();
        }
        return pattern;
    }

    /// <summary>Re-applies a frozen pattern: Λ ← 0 where the pattern says pruned.</summary>
    public void MaskUsingRankPattern(IReadOnlyDictionary<string, bool[]> pattern)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        foreach (var (path, adapter) in modules)
        {
            if (!pattern.TryGetValue($"{path}.lora_E", out var keep) || keep.Length != adapter.StoredRank) continue;
            var prune = torch.tensor(keep.Select(b => !b).ToArray()).view(-1, 1);
            adapter.E.masked_fill_(prune, 0.0);
        }
    }

    /// <summary>Final rank per module path: Σ of its pattern, or the stored rank where no pattern exists yet.</summary>
    public IReadOnlyDictionary<string, int> FinalRanks() => modules.ToDictionary(m => m.Path,
        m => RankPattern != null && RankPattern.TryGetValue($"{m.Path}.lora_E", out var keep) ? keep.Count(b => b) : (int)m.Adapter.StoredRank);

    /// <summary>
    /// HF AdaLoraModel.forward's penalty: mean over every A and B of ‖G − I‖_F (not squared), with
    /// G = A·Aᵀ and G = Bᵀ·B. Multiply by orth_reg_weight and add to the loss.
    /// </summary>
    public static Tensor OrthogonalPenalty(IEnumerable<AdaLoraAdapter> adapters)
    {
        Tensor? sum = null;
        int count = 0;
        foreach (var adapter in adapters)
        {
            foreach (var g in new[] { torch.matmul(adapter.A, adapter.A.t()), torch.matmul(adapter.B.t(), adapter.B) })
            {
                if (g.shape[0] == 0) continue; // r_k = 0 after a pruned load
                var norm = torch.linalg.matrix_norm(g - torch.eye(g.shape[0], dtype: g.dtype, device: g.device), "fro");
                sum = sum is null ? norm : sum + norm;
                count++;
            }
        }
        return sum is null ? torch.tensor(0.0f) : sum / count;
    }
}
