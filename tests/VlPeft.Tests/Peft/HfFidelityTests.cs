using TorchSharp;
using VlPeft.Peft;
using VlPeft.Peft.Lora;
using static TorchSharp.torch;

namespace VlPeft.Tests.Peft;

/// <summary>Behaviours matched to HF PEFT's config checks and modules_to_save wrapper.</summary>
public class HfFidelityTests
{
    static string Json(string body) => "{\"peft_type\": \"LORA\", \"target_modules\": [\"query\"], " + body + "}";

    [Theory]
    [InlineData("\"use_dora\": true, \"lora_bias\": true", "lora_bias cannot be used together with use_dora")]
    [InlineData("\"init_lora_weights\": \"gaussian\", \"lora_bias\": true", "lora_bias cannot be used with init_lora_weights 'gaussian'")]
    [InlineData("\"init_lora_weights\": \"pissa\"", "init_lora_weights 'pissa' is not supported")]
    public void Configs_hf_refuses_are_refused(string body, string message)
    {
        var error = Assert.Throws<BadInputException>(() => PeftConfig.Parse(Json(body), "adapter_config.json"));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Layers_to_transform_with_a_regex_target_is_an_error_and_an_empty_list_means_every_layer()
    {
        var regex = "{\"peft_type\": \"LORA\", \"target_modules\": \".*query\", \"layers_to_transform\": [0]}";
        Assert.Contains("cannot be used when target_modules is a regex", Assert.Throws<BadInputException>(() => PeftConfig.Parse(regex, "a.json")).Message);
        var all = (LoraConfig)PeftConfig.Parse(Json("\"layers_to_transform\": []"), "a.json");
        Assert.True(TargetMatcher.IsTarget(all, "encoder.layer.0.attention.attention.query"));
        Assert.True(TargetMatcher.IsTarget(all, "encoder.layer.1.attention.attention.query"));
    }

    [Fact]
    public void Eva_adapters_load_as_plain_lora_but_are_not_created_for_training()
    {
        var eva = (LoraConfig)PeftConfig.Parse(Json("\"init_lora_weights\": \"eva\""), "a.json");
        Assert.Equal("eva", eva.InitLoraWeights);
        Assert.Contains("not implemented for new adapters", Assert.Throws<BadInputException>(() => eva.ForTraining(10)).Message);
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, eva with { TargetModules = ModuleSelector.FromNames("query") });
        Assert.NotEmpty(peft.AdaptedLayers());
    }

    [Fact]
    public void Modules_to_save_keep_one_trained_copy_per_adapter_and_set_adapter_switches_them()
    {
        torch.manual_seed(8);
        using var model = new ToyModel();
        var config = new LoraConfig { TargetModules = ModuleSelector.FromNames("query"), ModulesToSave = new[] { "lm_head" } };
        var head = model.named_parameters().Single(p => p.name == "lm_head.weight").parameter;
        var original = head.detach().clone();
        var peft = PeftModel.Create(model, config, "a");
        using (torch.no_grad()) head.fill_(1.0f);                      // adapter a's training
        peft.AddAdapter("b", config);
        peft.SetAdapter("b");
        TensorAssert.Close(original, head, 0);                        // b starts from the original module
        using (torch.no_grad()) head.fill_(2.0f);                      // adapter b's training
        peft.SetAdapter("a");
        Assert.Equal(1.0f, head.max().item<float>());
        Assert.Equal(1.0f, head.min().item<float>());
        peft.SetAdapter("b");
        Assert.Equal(2.0f, head.min().item<float>());
        peft.DisableAdapters();
        TensorAssert.Close(original, head, 0);
        peft.EnableAdapters();
        Assert.Equal(2.0f, head.min().item<float>());
    }
}
