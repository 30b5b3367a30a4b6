using TorchSharp;
using VlPeft.Peft;
using VlPeft.Peft.AdaLora;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Tests.Peft;

public class AdaLoraTests
{
    static AdaLoraConfig Config(int total = 100, int tinit = 0, int tfinal = 0, int deltaT = 1) => new()
    {
        TargetModules = ModuleSelector.FromNames("query", "value"),
        InitR = 12, TargetR = 8, Tinit = tinit, Tfinal = tfinal, DeltaT = deltaT, TotalStep = total,
    };

    [Fact]
    public void Forward_is_P_times_Q_times_Lambda_scaled_by_alpha_over_ranknum()
    {
        torch.manual_seed(5);
        using var layer = new Linear(6, 4);
        var ada = new AdaLoraAdapter("default", layer, initRank: 3, scaling: 8, dropout: 0);
        layer.Attach(ada);
        Assert.Equal(0, ada.E.abs().sum().item<float>());
        Assert.False(ada.RankNum.requires_grad);
        using (torch.no_grad()) ada.E.normal_();
        using var x = torch.randn(2, 6);
        var expected = layer.Base(x) + x.matmul((ada.A * ada.E).t()).matmul(ada.B.t()) * (8 / (3 + 1e-5));
        TensorAssert.Close(expected, layer.call(x));
        layer.Merge();
        TensorAssert.Close(expected, layer.call(x));
        Assert.Equal(new[] { "lora_A.default", "lora_B.default", "lora_E.default", "ranknum.default" },
            layer.named_parameters().Select(p => p.name).Where(n => n != "weight" && n != "bias").OrderBy(n => n));
    }

    [Theory]
    [InlineData(5, 72, false)]   // warm-up: t ≤ tinit
    [InlineData(10, 72, false)]
    [InlineData(11, -1, false)]  // cubic phase, 11 % 5 ≠ 0
    [InlineData(15, -1, true)]
    [InlineData(45, 51, true)]   // (72 − 48)·0.5³ + 48 = 51
    [InlineData(80, 48, true)]   // end of the cubic phase
    [InlineData(81, 48, true)]   // final phase
    public void Budget_schedule_equals_the_closed_form(int step, int expectedBudget, bool expectedMask)
    {
        // 6 adapted modules (query/value in 3 attentions) → B0 = 6·12 = 72, BT = 6·8 = 48.
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, Config(total: 100, tinit: 10, tfinal: 20, deltaT: 5));
        var allocator = ((VlPeft.Peft.AdaLora.AdaLoraTuner)peft.Tuner()).Allocator!;
        Assert.Equal(72, allocator.InitialBudget);
        Assert.Equal(48, allocator.TargetBudget);
        if (expectedBudget < 0)
            expectedBudget = (int)Math.Floor(24 * Math.Pow(1 - (step - 10) / 70.0, 3) + 48);
        Assert.Equal((expectedBudget, expectedMask), allocator.BudgetSchedule(step));
    }

    [Fact]
    public void Sensitivity_and_uncertainty_follow_the_ema_by_hand()
    {
        torch.manual_seed(6);
        using var layer = new Linear(2, 2);
        var ada = new AdaLoraAdapter("default", layer, initRank: 2, scaling: 8, dropout: 0);
        layer.Attach(ada);
        using (torch.no_grad())
        {
            ada.A.copy_(torch.tensor(new float[] { 1, -2, 3, 4 }).view(2, 2));
            ada.E.copy_(torch.tensor(new float[] { 0.5f, -1 }).view(2, 1));
            ada.B.copy_(torch.tensor(new float[] { 2, 0, -1, 1 }).view(2, 2));
        }
        var allocator = new RankAllocator(Config() with { InitR = 2, TargetR = 1 }, new[] { ("l", ada) });
        // Gradients chosen by hand through a linear loss: ∂/∂θ Σ c⊙θ = c.
        var cA = new float[] { 0.1f, 0.2f, -0.3f, 0.4f };
        var cE = new float[] { 2, -1 };
        var cB = new float[] { 1, 1, -1, 0.5f };
        double[] iptA = Product(new float[] { 1, -2, 3, 4 }, cA), iptE = Product(new float[] { 0.5f, -1 }, cE), iptB = Product(new float[] { 2, 0, -1, 1 }, cB);
        for (int step = 0; step < 2; step++)
        {
            foreach (var p in new[] { ada.A, ada.E, ada.B }) p.grad?.zero_();
            var loss = (ada.A * torch.tensor(cA).view(2, 2)).sum() + (ada.E * torch.tensor(cE).view(2, 1)).sum() + (ada.B * torch.tensor(cB).view(2, 2)).sum();
            loss.backward();
            allocator.UpdateImportance();
        }
        // Same I both steps: Ī1 = .15I, Ū1 = .15·|I − .15I|; Ī2 = .85Ī1 + .15I, Ū2 = .85Ū1 + .15·|I − Ī2|.
        static double Score(double i)
        {
            double ema1 = 0.15 * i, unc1 = 0.15 * Math.Abs(i - ema1);
            double ema2 = 0.85 * ema1 + 0.15 * i, unc2 = 0.85 * unc1 + 0.15 * Math.Abs(i - ema2);
            return ema2 * unc2;
        }
        var sA = iptA.Select(Score).ToArray();
        var sE = iptE.Select(Score).ToArray();
        var sB = iptB.Select(Score).ToArray();
        TensorAssert.Close(torch.tensor(sA).view(2, 2), allocator.ElementScore("l.lora_A.default", ada.A), 1e-6);
        // Triplet i: s(E_i) + mean over row i of A + mean over column i of B.
        var expectedTriplet = new[] { sE[0] + (sA[0] + sA[1]) / 2 + (sB[0] + sB[2]) / 2, sE[1] + (sA[2] + sA[3]) / 2 + (sB[1] + sB[3]) / 2 };
        TensorAssert.Close(torch.tensor(expectedTriplet), allocator.TripletScores()["l"], 1e-6);
    }

    static double[] Product(float[] a, float[] b) => a.Zip(b, (x, y) => (double)Math.Abs(x * y)).ToArray();

    [Fact]
    public void Masking_keeps_exactly_the_budget()
    {
        torch.manual_seed(7);
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, Config());
        var allocator = ((VlPeft.Peft.AdaLora.AdaLoraTuner)peft.Tuner()).Allocator!;
        foreach (var (_, a) in peft.AdaptedLayers()) using (torch.no_grad()) ((AdaLoraAdapter)a).E.normal_();
        using var x = torch.randn(4, ToyModel.Hidden);
        model.call(x).square().sum().backward();
        allocator.UpdateImportance();
        var pattern = allocator.MaskToBudget(60);
        Assert.Equal(60, pattern.Values.Sum(keep => keep.Count(k => k)));
        long zeros = peft.AdaptedLayers().Sum(t => ((AdaLoraAdapter)t.Adapter).E.eq(0).sum().item<long>());
        Assert.Equal(72 - 60, zeros);
        Assert.All(pattern.Keys, k => Assert.EndsWith(".lora_E", k));
    }

    [Fact]
    public void Orthogonal_penalty_on_a_hand_computed_2x2_case()
    {
        using var layer = new Linear(2, 2);
        var ada = new AdaLoraAdapter("default", layer, initRank: 2, scaling: 8, dropout: 0);
        using (torch.no_grad())
        {
            ada.A.copy_(torch.tensor(new float[] { 1, 0, 0, 2 }).view(2, 2));  // AAᵀ − I = diag(0, 3): ‖·‖F = 3
            ada.B.copy_(torch.tensor(new float[] { 1, 1, 0, 1 }).view(2, 2));  // BᵀB − I = [[0,1],[1,1]]: ‖·‖F = √3
        }
        var penalty = RankAllocator.OrthogonalPenalty(new[] { ada });
        Assert.Equal((3 + Math.Sqrt(3)) / 2, penalty.item<float>(), 5);
    }

    [Fact]
    public void Training_to_the_end_leaves_the_target_budget_and_the_pattern_round_trips_through_files()
    {
        torch.manual_seed(8);
        using var model = new ToyModel();
        var config = Config(total: 6, tinit: 1, tfinal: 2);
        var peft = PeftModel.Create(model, config);
        var optimizer = torch.optim.AdamW(peft.TrainableParameters().Select(p => p.Parameter), lr: 0.05);
        using var x = torch.randn(8, ToyModel.Hidden);
        using var target = torch.randn(8, 10);
        for (int step = 1; step <= 6; step++)
        {
            using var scope = torch.NewDisposeScope();
            var loss = (model.call(x) - target).square().mean() + peft.ExtraLoss();
            loss.backward();
            optimizer.step();
            peft.AfterOptimizerStep(step);   // HF order: backward → step → update_and_allocate → zero_grad
            optimizer.zero_grad();
        }
        var ranks = ((VlPeft.Peft.AdaLora.AdaLoraTuner)peft.Tuner()).Allocator!.FinalRanks();
        Assert.Equal(6 * 8, ranks.Values.Sum());
        var pattern = ((AdaLoraConfig)peft.Configs["default"]).RankPattern!;
        foreach (var (path, adapter) in peft.AdaptedLayers())
            Assert.Equal(pattern[$"{path}.lora_E"].Count(k => !k), ((AdaLoraAdapter)adapter).E.eq(0).sum().item<long>());

        using var dir = new TempDirectory();
        model.eval();
        using var expected = model.call(x);
        PeftFiles.Save(peft, dir.Path);
        using (var file = VlPeft.Tensors.SafetensorsFile.Open(dir.File("adapter_model.safetensors")))
        {
            Assert.DoesNotContain(file.Header.Tensors, t => t.Name.Contains("ranknum"));
            foreach (var (path, _) in peft.AdaptedLayers())
            {
                int rk = pattern[$"{path}.lora_E"].Count(k => k);
                Assert.Equal(new long[] { rk, ToyModel.Hidden }, file.Header.Find($"base_model.model.{path}.lora_A")!.Shape);
                Assert.Equal(new long[] { rk, 1 }, file.Header.Find($"base_model.model.{path}.lora_E")!.Shape);
                Assert.Equal(new long[] { ToyModel.Hidden, rk }, file.Header.Find($"base_model.model.{path}.lora_B")!.Shape);
            }
        }

        using var fresh = model.CloneBase();
        var loaded = PeftFiles.Load(fresh, dir.Path);
        fresh.eval();
        TensorAssert.Close(expected, fresh.call(x), 1e-5);
        foreach (var (_, adapter) in loaded.AdaptedLayers())
            Assert.Equal(12, ((AdaLoraAdapter)adapter).RankNum.item<float>()); // ranknum stays init_r
    }

    [Fact]
    public void A_pruned_adapter_loaded_for_training_starts_its_budget_from_the_ranks_it_kept()
    {
        using var model = new ToyModel();
        var pattern = new Dictionary<string, bool[]>();
        var targets = model.named_modules().Where(m => m.name.EndsWith(".query") || m.name.EndsWith(".value")).Select(m => m.name).ToList();
        for (int i = 0; i < targets.Count; i++)
            pattern[$"{targets[i]}.lora_E"] = Enumerable.Range(0, 12).Select(k => k < 1 + i % 3).ToArray();   // keeps 1, 2 or 3
        var config = Config() with { TargetModules = ModuleSelector.FromNames("query", "value"), RankPattern = pattern };
        var peft = PeftModel.Create(model, config);
        var allocator = ((AdaLoraTuner)peft.Tuner()).Allocator;
        Assert.Equal(pattern.Values.Sum(keep => keep.Count(k => k)), allocator.InitialBudget);   // not init_r × modules
        Assert.Equal(8 * targets.Count, allocator.TargetBudget);
    }
}
