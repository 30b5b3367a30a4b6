using System.Collections.Concurrent;
using System.Text.Json;
using TorchSharp;
using VlPeft.Peft;
using VlPeft.Peft.Lora;
using VlPeft.Tensors;
using VlPeft.Tests.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Tests.Peft;

public class PeftFilesTests
{
    static LoraConfig Config() => new() { R = 2, LoraAlpha = 4, TargetModules = ModuleSelector.FromNames("query", "value") };

    [Fact]
    public void Saved_files_follow_hf_peft_names_shapes_and_config_fields()
    {
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, Config());
        using var dir = new TempDirectory();
        PeftFiles.Save(peft, dir.Path);

        using var file = SafetensorsFile.Open(dir.File("adapter_model.safetensors"));
        Assert.Equal("pt", file.Header.Metadata["format"]);
        var names = file.Header.Tensors.Select(t => t.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();
        Assert.Equal(12, names.Count);
        Assert.Contains("base_model.model.encoder.layer.0.attention.attention.query.lora_A.weight", names);
        Assert.Contains("base_model.model.encoder.layer.0.crossattention.attention.value.lora_B.weight", names);
        Assert.Equal(new long[] { 2, 8 }, file.Header.Find("base_model.model.encoder.layer.1.attention.attention.value.lora_A.weight")!.Shape);
        Assert.Equal(new long[] { 8, 2 }, file.Header.Find("base_model.model.encoder.layer.1.attention.attention.value.lora_B.weight")!.Shape);

        string text = File.ReadAllText(dir.File("adapter_config.json"));
        using var json = JsonDocument.Parse(text);
        var keys = json.RootElement.EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal(keys.OrderBy(k => k, StringComparer.Ordinal), keys); // sorted, as json.dumps(sort_keys=True)
        Assert.Equal("LORA", json.RootElement.GetProperty("peft_type").GetString());
        Assert.True(json.RootElement.GetProperty("inference_mode").GetBoolean());
        Assert.Equal(2, json.RootElement.GetProperty("r").GetInt32());
        Assert.Equal(4, json.RootElement.GetProperty("lora_alpha").GetDouble());
        Assert.Equal(new[] { "query", "value" }, json.RootElement.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()));
        Assert.Contains("\n  \"bias\": \"none\"", text); // indent 2
    }

    [Fact]
    public void Save_then_load_gives_identical_outputs()
    {
        torch.manual_seed(20);
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, Config() with { UseDora = true });
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.Contains("lora_"))) p.normal_(0, 0.3);
        using var x = torch.randn(3, ToyModel.Hidden);
        using var expected = model.call(x);
        using var dir = new TempDirectory();
        PeftFiles.Save(peft, dir.Path);
        using (var file = SafetensorsFile.Open(dir.File("adapter_model.safetensors")))
            Assert.Contains(file.Header.Tensors, t => t.Name == "base_model.model.encoder.layer.0.attention.attention.query.lora_magnitude_vector");

        using var fresh = model.CloneBase();
        var loaded = PeftFiles.Load(fresh, dir.Path);
        TensorAssert.Close(expected, fresh.call(x), 1e-6);
        Assert.All(loaded.AdapterParameterEntries("default"), t => Assert.False(t.Parameter.requires_grad)); // inference mode

        using var trainable = model.CloneBase();
        var again = PeftFiles.Load(trainable, dir.Path, trainable: true);
        Assert.All(again.AdapterParameterEntries("default"), t => Assert.True(t.Parameter.requires_grad));
    }

    [Fact]
    public void Loads_an_adapter_written_by_hand_as_hf_peft_writes_it()
    {
        // Built from the spec alone: HF's config text (with keys VlPeft ignores) and HF's tensor keys.
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("adapter_config.json"), """
            {
              "alpha_pattern": {},
              "auto_mapping": null,
              "base_model_name_or_path": "toy",
              "bias": "none",
              "fan_in_fan_out": false,
              "inference_mode": true,
              "init_lora_weights": true,
              "layers_pattern": null,
              "layers_to_transform": null,
              "lora_alpha": 2,
              "lora_dropout": 0.0,
              "megatron_config": null,
              "megatron_core": "megatron.core",
              "modules_to_save": null,
              "peft_type": "LORA",
              "peft_version": "0.17.1",
              "r": 1,
              "rank_pattern": {},
              "revision": null,
              "target_modules": ["lm_head"],
              "task_type": null,
              "use_dora": false,
              "use_rslora": false
            }
            """);
        var a = Enumerable.Range(0, 8).Select(i => 0.1f * i).ToArray();   // lora_A [1, 8]
        var b = Enumerable.Range(0, 10).Select(i => 1f - 0.2f * i).ToArray(); // lora_B [10, 1]
        string header = "{\"__metadata__\":{\"format\":\"pt\"},"
            + "\"base_model.model.lm_head.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]},"
            + "\"base_model.model.lm_head.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[10,1],\"data_offsets\":[32,72]}}";
        File.WriteAllBytes(dir.File("adapter_model.safetensors"), SafetensorsBytes.Build(header, SafetensorsBytes.Floats(a.Concat(b).ToArray())));

        using var model = new ToyModel();
        var head = model.named_modules().Single(m => m.name == "lm_head").module as VlPeft.Nn.Linear;
        using var h = torch.randn(2, ToyModel.Hidden);
        using var baseOut = head!.call(h);
        PeftFiles.Load(model, dir.Path);
        // Δ = (α/r)·B·A·h with α/r = 2.
        var expected = baseOut + 2.0 * h.matmul(torch.tensor(a).view(1, 8).t()).matmul(torch.tensor(b).view(10, 1).t());
        TensorAssert.Close(expected, head.call(h));
    }

    [Fact]
    public void Missing_or_misshaped_tensors_and_bad_configs_are_clear_errors()
    {
        using var model = new ToyModel();
        var peft = PeftModel.Create(model, Config());
        using var dir = new TempDirectory();
        PeftFiles.Save(peft, dir.Path);

        // A config asking for rank 3 does not fit rank-2 tensors.
        var config = File.ReadAllText(dir.File("adapter_config.json"));
        File.WriteAllText(dir.File("adapter_config.json"), config.Replace("\"r\": 2", "\"r\": 3"));
        using (var m = new ToyModel())
        {
            var e = Assert.Throws<BadInputException>(() => PeftFiles.Load(m, dir.Path));
            Assert.Contains("has shape [2, 8] but the model expects [3, 8]", e.Message);
        }
        // A config targeting more modules than the file holds.
        File.WriteAllText(dir.File("adapter_config.json"), config.Replace("\"value\"", "\"value\", \"key\""));
        using (var m = new ToyModel())
        {
            var e = Assert.Throws<BadInputException>(() => PeftFiles.Load(m, dir.Path));
            Assert.Contains("lacks 6 tensor(s)", e.Message); // key in 3 attentions × (A, B)
        }
        File.WriteAllText(dir.File("adapter_config.json"), "{\"r\": 2}");
        using (var m = new ToyModel())
            Assert.Contains("no 'peft_type'", Assert.Throws<BadInputException>(() => PeftFiles.Load(m, dir.Path)).Message);
        File.WriteAllText(dir.File("adapter_config.json"), "{not json");
        using (var m = new ToyModel())
            Assert.Contains("not valid JSON", Assert.Throws<BadInputException>(() => PeftFiles.Load(m, dir.Path)).Message);
    }

    [Fact]
    public void Unknown_config_keys_are_warned_about_and_ignored()
    {
        var warnings = new ConcurrentBag<string>();
        var previous = VlPeft.Log.Warning;
        VlPeft.Log.Warning = warnings.Add;
        try
        {
            var config = PeftConfig.Parse("{\"peft_type\":\"LORA\",\"target_modules\":[\"q\"],\"r\":4,\"fancy_new_option\":1,\"use_qalora\":true,\"megatron_core\":\"megatron.core\"}", "cfg.json");
            Assert.Equal(4, ((LoraConfig)config).R);
            Assert.Contains(warnings, w => w.Contains("unknown key 'fancy_new_option'"));
            Assert.Contains(warnings, w => w.Contains("'use_qalora' is not supported"));
            Assert.DoesNotContain(warnings, w => w.Contains("megatron_core"));
        }
        finally
        {
            VlPeft.Log.Warning = previous;
        }
    }
}
