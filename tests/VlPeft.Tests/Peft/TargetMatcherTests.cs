using VlPeft.Peft;
using VlPeft.Peft.Lora;

namespace VlPeft.Tests.Peft;

public class TargetMatcherTests
{
    static LoraConfig Names(params string[] names) => new() { TargetModules = ModuleSelector.FromNames(names) };
    static LoraConfig Regex(string regex) => new() { TargetModules = ModuleSelector.FromRegex(regex) };

    public static TheoryData<string, LoraConfig, string, bool> Cases() => new()
    {
        // list form: exact name or dot-bounded suffix
        { "exact", Names("query"), "query", true },
        { "suffix", Names("query"), "encoder.layer.0.attention.attention.query", true },
        { "suffix matches cross too", Names("query"), "encoder.layer.0.crossattention.attention.query", true },
        { "no dot boundary", Names("v"), "vision.qkv", false },
        { "v matches v", Names("v"), "encoder.block.0.layer.0.SelfAttention.v", true },
        { "multi-segment suffix", Names("output.dense"), "encoder.layer.0.attention.output.dense", true },
        { "multi-segment suffix at FFN", Names("output.dense"), "encoder.layer.0.output.dense", true },
        { "partial segment", Names("dense"), "encoder.layer.0.output.densex", false },
        { "prefix is not enough", Names("encoder"), "encoder.layer.0.output.dense", false },
        // regex form: full match on the whole path
        { "regex full match", Regex(@"qformer\.encoder\.layer\.\d+\.output\.dense"), "qformer.encoder.layer.3.output.dense", true },
        { "regex excludes attention output", Regex(@"qformer\.encoder\.layer\.\d+\.output\.dense"), "qformer.encoder.layer.3.attention.output.dense", false },
        { "regex self-attention only", Regex(@".*\.attention\.attention\.(query|value)"), "qformer.encoder.layer.0.attention.attention.query", true },
        { "regex skips crossattention", Regex(@".*\.attention\.attention\.(query|value)"), "qformer.encoder.layer.0.crossattention.attention.query", false },
        { "regex must match all of it", Regex("query"), "encoder.layer.0.attention.attention.query", false },
        // exclusions
        { "exclude list wins", Names("query") with { ExcludeModules = ModuleSelector.FromNames("crossattention.attention.query") }, "encoder.layer.0.crossattention.attention.query", false },
        { "exclude list keeps others", Names("query") with { ExcludeModules = ModuleSelector.FromNames("crossattention.attention.query") }, "encoder.layer.0.attention.attention.query", true },
        { "exclude regex", Names("query") with { ExcludeModules = ModuleSelector.FromRegex(@"vision_model\..*") }, "vision_model.encoder.query", false },
        { "modules_to_save component is never a target", Names("dense") with { ModulesToSave = new[] { "classifier" } }, "classifier.dense", false },
        // layers_to_transform
        { "layer kept", Names("query") with { LayersToTransform = new[] { 1 } }, "encoder.layer.1.attention.attention.query", true },
        { "layer dropped", Names("query") with { LayersToTransform = new[] { 1 } }, "encoder.layer.0.attention.attention.query", false },
        { "layers_pattern", Names("query") with { LayersToTransform = new[] { 2 }, LayersPattern = new[] { "layer" } }, "x.encoder.layer.2.attention.query", true },
        { "layers_pattern mismatch", Names("query") with { LayersToTransform = new[] { 2 }, LayersPattern = new[] { "h" } }, "x.encoder.layer.2.attention.query", false },
        { "no layer index", Names("query") with { LayersToTransform = new[] { 0 } }, "query", false },
        { "layers ignored for regex", Regex(".*query") with { LayersToTransform = new[] { 5 } }, "encoder.layer.0.attention.attention.query", true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_like_hf_peft(string why, LoraConfig config, string path, bool expected)
    {
        Assert.True(expected == TargetMatcher.IsTarget(config, path), why);
    }

    [Fact]
    public void Layer_index_is_the_first_dotted_number()
    {
        Assert.Equal(3, TargetMatcher.LayerIndex("model.layers.3.self_attn.q_proj", null));
        Assert.Equal(7, TargetMatcher.LayerIndex("encoder.block.7.layer.0.SelfAttention.q", new[] { "block" }));
        Assert.Null(TargetMatcher.LayerIndex("lm_head", null));
    }

    [Fact]
    public void Finds_targets_in_a_model_and_all_linear_skips_the_head()
    {
        using var model = new ToyModel();
        var found = TargetMatcher.FindTargets(model, Names("query", "value")).Select(t => t.Path).OrderBy(p => p).ToList();
        Assert.Equal(new[]
        {
            "encoder.layer.0.attention.attention.query", "encoder.layer.0.attention.attention.value",
            "encoder.layer.0.crossattention.attention.query", "encoder.layer.0.crossattention.attention.value",
            "encoder.layer.1.attention.attention.query", "encoder.layer.1.attention.attention.value",
        }, found);

        var all = TargetMatcher.FindTargets(model, new LoraConfig { TargetModules = ModuleSelector.AllLinear }).Select(t => t.Path).ToList();
        Assert.DoesNotContain("lm_head", all);
        Assert.Contains("vision.qkv", all);
        Assert.Equal(model.named_modules().Count(m => m.module is VlPeft.Nn.Linear) - 1, all.Count);
    }

    [Fact]
    public void No_match_and_non_linear_targets_are_clear_errors()
    {
        using var model = new ToyModel();
        var none = Assert.Throws<BadInputException>(() => TargetMatcher.FindTargets(model, Names("q_proj")));
        Assert.Contains("not found", none.Message);
        var notLinear = Assert.Throws<BadInputException>(() => TargetMatcher.FindTargets(model, Names("attention")));
        Assert.Contains("only linear layers", notLinear.Message);
    }
}
