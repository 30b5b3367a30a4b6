using TorchSharp;
using VlPeft.Analysis;
using VlPeft.Peft;
using VlPeft.Peft.Lora;
using static TorchSharp.torch;

namespace VlPeft.Tests.Peft;

public class PeftModelTests
{
    static LoraConfig QueryValue(int r = 2) => new() { R = r, LoraAlpha = 8, TargetModules = ModuleSelector.FromNames("query", "value") };

    static void RandomizeB(PeftModel peft, string name = "default")
    {
        using var _ = torch.no_grad();
        foreach (var (_, adapter) in peft.AdaptedLayers(name)) ((LoraAdapter)adapter).B.weight.normal_(0, 0.3);
    }

    [Fact]
    public void Gradients_reach_only_adapter_parameters()
    {
        torch.manual_seed(10);
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, QueryValue());
        RandomizeB(peft);
        using var x = torch.randn(4, ToyModel.Hidden);
        model.call(x).square().sum().backward();
        foreach (var (name, p) in model.named_parameters())
        {
            bool isAdapter = name.Contains(".lora_A.default.") || name.Contains(".lora_B.default.");
            Assert.Equal(isAdapter, p.requires_grad);
            if (isAdapter) Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, name);
            else Assert.Null(p.grad);
        }
    }

    [Fact]
    public void Parameter_report_counts_exactly()
    {
        using var model = new ToyModel();
        // By hand from the shapes: attention block = 4 linears of 8×8 + 8 = 288; FFN = (8·16 + 16) + (16·8 + 8) = 280;
        // layer 0 has cross-attention: 288 + 288 + 280; layer 1: 288 + 280; qkv 8·24 + 24 = 216; lm_head 8·10 = 80.
        long baseTotal = (288 + 288 + 280) + (288 + 280) + 216 + 80;
        var before = ParameterReport.Of(model);
        Assert.Equal(baseTotal, before.Total);
        Assert.Equal(baseTotal, before.Trainable);

        var peft = PeftModel.Create(model, QueryValue(r: 2));
        var report = ParameterReport.Of(model);
        long adapters = 6 * (2 * 8 + 8 * 2); // six 8×8 layers, A [2, 8] + B [8, 2]
        Assert.Equal(baseTotal + adapters, report.Total);
        Assert.Equal(adapters, report.Trainable);
        Assert.Equal(100.0 * adapters / (baseTotal + adapters), report.TrainablePercent, 10);
        var components = report.Components.ToDictionary(c => c.Name);
        Assert.Equal(new ParameterCount("encoder", 288 + 288 + 280 + 288 + 280 + adapters, adapters), components["encoder"]);
        Assert.Equal(new ParameterCount("vision", 216, 0), components["vision"]);
        Assert.Equal(new ParameterCount("lm_head", 80, 0), components["lm_head"]);
        var query = report.Modules.Single(m => m.Name == "encoder.layer.1.attention.attention.query");
        Assert.Equal(new ParameterCount("encoder.layer.1.attention.attention.query", 72 + 32, 32), query);
    }

    [Fact]
    public void Merge_and_unload_gives_the_same_outputs_without_adapter_tensors()
    {
        torch.manual_seed(11);
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, QueryValue());
        RandomizeB(peft);
        using var x = torch.randn(3, ToyModel.Hidden);
        using var expected = model.call(x);
        var plain = peft.MergeAndUnload(safe: true);
        TensorAssert.Close(expected, ((ToyModel)plain).call(x));
        Assert.DoesNotContain(plain.named_parameters(), p => p.name.Contains("lora_"));
        Assert.Equal(1720, ParameterReport.Of(plain).Total);
    }

    [Fact]
    public void Disable_gives_base_outputs_and_enable_restores()
    {
        torch.manual_seed(12);
        using var model = new ToyModel();
        using var x = torch.randn(3, ToyModel.Hidden);
        using var baseOut = model.call(x);
        var peft = PeftModel.Create(model, QueryValue());
        RandomizeB(peft);
        using var adapted = model.call(x);
        Assert.False(torch.allclose(baseOut, adapted));
        peft.DisableAdapters();
        TensorAssert.Close(baseOut, model.call(x));
        peft.EnableAdapters();
        TensorAssert.Close(adapted, model.call(x));
    }

    [Fact]
    public void Added_adapters_are_inactive_and_frozen_until_set()
    {
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, QueryValue());
        peft.AddAdapter("other", new LoraConfig { R = 4, TargetModules = ModuleSelector.FromNames("dense") });
        Assert.All(peft.AdapterParameterEntries("other"), t => Assert.False(t.Parameter.requires_grad));
        Assert.All(peft.AdapterParameterEntries("default"), t => Assert.True(t.Parameter.requires_grad));
        peft.SetAdapter("other");
        Assert.All(peft.AdapterParameterEntries("other"), t => Assert.True(t.Parameter.requires_grad));
        Assert.All(peft.AdapterParameterEntries("default"), t => Assert.False(t.Parameter.requires_grad));
        peft.DeleteAdapter("other");
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains(".other"));
    }

    [Fact]
    public void Bias_options_unfreeze_the_right_biases()
    {
        using var all = new ToyModel();
        PeftModel.Create(all, QueryValue() with { Bias = "all" });
        Assert.All(all.named_parameters().Where(p => p.name.EndsWith(".bias") && !p.name.Contains("lora_")), p => Assert.True(p.parameter.requires_grad, p.name));

        using var only = new ToyModel();
        PeftModel.Create(only, QueryValue() with { Bias = "lora_only" });
        foreach (var (name, p) in only.named_parameters().Where(p => p.name.EndsWith(".bias")))
            Assert.Equal(name.EndsWith("query.bias") || name.EndsWith("value.bias"), p.requires_grad);
    }

    [Fact]
    public void Modules_to_save_train_in_full_and_revert_while_disabled()
    {
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, QueryValue() with { ModulesToSave = new[] { "lm_head" } });
        var head = model.named_parameters().Single(p => p.name == "lm_head.weight").parameter;
        Assert.True(head.requires_grad);
        using var original = head.detach().clone();
        using (torch.no_grad()) head.add_(1.0);
        peft.DisableAdapters();
        TensorAssert.Close(original, head, 0);
        peft.EnableAdapters();
        TensorAssert.Close(original + 1.0, head, 1e-6);
        Assert.Contains("base_model.model.lm_head.weight", PeftFiles.KeyMap(peft, "default").Keys);
    }

    [Fact]
    public void Rank_and_alpha_patterns_apply_per_module()
    {
        using var model = new ToyModel();
        var config = QueryValue(r: 2) with
        {
            RankPattern = new Dictionary<string, int> { ["layer.1.attention.attention.query"] = 5 },
            AlphaPattern = new Dictionary<string, double> { [@"crossattention\.attention\.value"] = 32 },
        };
        var peft = PeftModel.Create(model, config);
        var adapters = peft.AdaptedLayers().ToDictionary(t => t.Path, t => (LoraAdapter)t.Adapter);
        Assert.Equal(5, adapters["encoder.layer.1.attention.attention.query"].Rank);
        Assert.Equal(2, adapters["encoder.layer.0.attention.attention.query"].Rank);
        Assert.Equal(16, adapters["encoder.layer.0.crossattention.attention.value"].Scaling);
        Assert.Equal(4, adapters["encoder.layer.0.attention.attention.value"].Scaling);
    }
}
