using TorchSharp;
using VlPeft.Analysis;
using VlPeft.Data.Synthetic;
using VlPeft.Experiments;
using VlPeft.Models;
using VlPeft.Models.Loading;
using VlPeft.Peft;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Tests.Plugins;

/// <summary>
/// The proof that families and methods plug in: a toy model family and a toy site-adapter method, defined
/// only in this project, train through an experiment, save, load and report with no library change.
/// </summary>
public class PluginTests
{
    const int Hidden = 8, Layers = 2;

    static PluginTests()
    {
        ModelFamilies.Register(new ToyFamily());
        VlPeft.Models.Configs.ModelPresets.Register("toy-vlm-tiny", ToyFamily.ConfigJson(Hidden, Layers));
        PeftMethods.Register(ToyGateConfig.Type, ToyGateConfig.Read);
    }

    [Fact]
    public void A_toy_family_and_a_toy_site_method_train_save_load_and_report_through_the_registries()
    {
        using var dir = new TempDirectory();
        torch.manual_seed(3);
        string modelDir = dir.File("toy-model");
        using (var fresh = ModelFamilies.FromPreset("toy-vlm-tiny"))   // a preset registered by the test, built through the registry
            PretrainedModel.Save(fresh, modelDir);
        SyntheticSuite.Generate(new SyntheticOptions { Task = "scienceqa", Train = 16, Val = 4, Test = 4, ImageSize = 16 }, dir.File("sqa"));

        var config = new ExperimentConfig
        {
            Name = "toy", Task = "scienceqa", ImageOnly = false, Data = dir.File("sqa"),
            Model = new ExperimentConfig.ModelSection { Path = modelDir },
            Peft = new() { ["peft_type"] = ToyGateConfig.Type, ["target_modules"] = new[] { "adapter_before_attention" }, ["init_gate"] = 0.5,
                ["train_in_full"] = new[] { "visual_projection" } },
            Training = new ExperimentConfig.TrainingSection { Epochs = 1, BatchSize = 8, Lr = 1e-2, Patience = null, Augment = false },
        };
        var result = ExperimentRunner.Run(config, dir.File("run"));

        // Trainable: one gate of width D per layer's attention site, and the projection trained in full (3·D + D).
        long gates = Layers * Hidden, projection = 3 * Hidden + Hidden;
        Assert.Equal(gates + projection, result.TrainableParameters);
        Assert.InRange(result.TestAccuracy!.Value, 0, 100);

        // Saved in the HF PEFT layout with our own peft_type, site-path keys without the adapter name.
        string adapter = dir.File("run/adapter");
        Assert.Contains("\"peft_type\": \"TOY_GATE\"", File.ReadAllText(Path.Combine(adapter, PeftFiles.ConfigFileName)));
        using (var file = SafetensorsFile.Open(Path.Combine(adapter, PeftFiles.WeightsFileName)))
        {
            var keys = file.Header.Tensors.Select(t => t.Name).OrderBy(k => k).ToList();
            var expected = Enumerable.Range(0, Layers).Select(i => $"base_model.model.language_model.model.layers.{i}.adapter_before_attention.gate")
                .Append("base_model.model.visual_projection.bias").Append("base_model.model.visual_projection.weight").OrderBy(k => k).ToList();
            Assert.Equal(expected, keys);
            // Training moved the gates away from their initial value.
            Assert.NotEqual(0.5f, file.ReadTensor(expected[0]).data<float>().ToArray().Select(Math.Abs).Max());
        }

        // Loading: same gates, and the same outputs as the model before saving would give (the gate reads x_v from the context).
        var (loaded, processor) = PretrainedModel.LoadWithProcessor(modelDir);
        var peft = PeftFiles.Load(loaded, adapter);
        Assert.Equal(ToyGateConfig.Type, peft.Configs["default"].PeftType);
        var batch = processor.TrainingBatch(new[] { new TextExample(null, "which colour?", "(a) red") });
        loaded.eval();
        using (torch.no_grad())
        {
            var with = loaded.call(batch).Logits.clone();
            Assert.Empty(loaded.Context.Names);                       // cleared after the forward
            peft.DisableAdapters();
            var without = loaded.call(batch).Logits;
            Assert.True(with.sub(without).abs().max().item<float>() > 0, "the site adapter changes the output");
        }

        // Report: counts per group through the contract (the gates count in the LM group, where they sit).
        var fresh2 = PretrainedModel.Load(modelDir);
        var summary = ModelParameterSummary.Of(fresh2, new TrainingPlan("toy", PeftFiles.ReadConfig(adapter) with { InferenceMode = false }, new[] { "visual_projection" }));
        Assert.Equal(gates + projection, summary.Trainable);
        Assert.Equal((long)gates, summary.Groups.Single(g => g.Name == "language_model").Trainable);
        Assert.Equal(projection, summary.BaselineTrainable);  // the only part outside the frozen tower
        var counted = VlPeft.Tests.Cli.CliRunner.Run("params", "--preset", "toy-vlm-tiny", "--peft", adapter, "--json");
        Assert.True(counted.ExitCode == 0, counted.Err);
        Assert.Equal(gates, System.Text.Json.JsonDocument.Parse(counted.Out).RootElement.GetProperty("trainable").GetInt64());

        // Merge is refused with a reason: a site adapter that reads the context cannot be folded into weights.
        var error = Assert.Throws<BadInputException>(() => peft.Merge());
        Assert.Contains("cannot be merged", error.Message);
    }

    [Fact]
    public void A_context_consumer_is_refused_by_a_model_that_does_not_publish_what_it_needs()
    {
        var model = new SiteOnlyModel();
        var config = new ToyGateConfig { TargetModules = ModuleSelector.FromNames("site") };
        var error = Assert.Throws<BadInputException>(() => PeftModel.Create(model, config));
        Assert.Contains("needs 'visual_features'", error.Message);
    }

    sealed class SiteOnlyModel : nn.Module<Tensor, Tensor>
    {
        readonly VlPeft.Nn.AdapterSite site = new(VlPeft.Nn.AdapterPlacement.BeforeAttention, 4);
        public SiteOnlyModel() : base("m") => RegisterComponents();
        public override Tensor forward(Tensor x) => site.call(x);
    }
}
