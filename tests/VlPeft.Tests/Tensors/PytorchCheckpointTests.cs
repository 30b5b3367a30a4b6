using System.Text.Json;
using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Peft;
using VlPeft.Tensors;
using VlPeft.Tests.Cli;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;

namespace VlPeft.Tests.Tensors;

/// <summary>PyTorch files (pytorch_model.bin, its sharded index, adapter_model.bin) through TensorCheckpoint: inspect, the loader, adapters.</summary>
public class PytorchCheckpointTests
{
    /// <summary>torch.save of a flat state dict (one storage per tensor), written by the test's own writer.</summary>
    static void Save(string path, IEnumerable<(string Name, Tensor Value)> tensors)
    {
        var writer = new TorchSaveWriter();
        writer.Write(path, writer.AddStateDict(tensors));
    }

    static VitRobertaForVqa Tiny(int seed)
    {
        torch.manual_seed(seed);
        return new VitRobertaForVqa(VitRobertaVqaConfig.Parse(ModelPresets.Json("tiny-vit-roberta-vqa"), "preset"));
    }

    [Fact]
    public void A_pytorch_model_bin_directory_loads_and_inspects_like_its_safetensors_twin()
    {
        using var dir = new TempDirectory();
        using var source = Tiny(41);
        var parameters = source.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).ToList();
        Directory.CreateDirectory(dir.File("bin"));
        Save(dir.File("bin/pytorch_model.bin"), parameters);
        File.WriteAllText(dir.File("bin/config.json"), source.ConfigJson());

        using var loaded = PretrainedModel.Load(dir.File("bin"));
        var values = loaded.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, value) in parameters) TensorAssert.Close(value, values[name], 0);

        var inspect = CliRunner.Run("inspect", dir.File("bin"), "--json");
        Assert.True(inspect.ExitCode == 0, inspect.Err);
        using var doc = JsonDocument.Parse(inspect.Out);
        var listed = doc.RootElement.GetProperty("tensors").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t);
        Assert.Equal(parameters.Count, listed.Count);
        Assert.Equal("F32", listed["classifier.3.weight"].GetProperty("dtype").GetString());
        Assert.Equal(new long[] { 2, 128 }, listed["classifier.3.weight"].GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()));
    }

    [Fact]
    public void A_sharded_pytorch_index_loads_and_a_shard_missing_a_tensor_is_named()
    {
        using var dir = new TempDirectory();
        using var source = Tiny(42);
        var parameters = source.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).ToList();
        var vit = parameters.Where(p => p.name.StartsWith("vit.")).ToList();
        var rest = parameters.Except(vit).ToList();
        Save(dir.File("pytorch_model-00001-of-00002.bin"), vit);
        Save(dir.File("pytorch_model-00002-of-00002.bin"), rest);
        var map = vit.ToDictionary(p => p.name, _ => "pytorch_model-00001-of-00002.bin");
        foreach (var (name, _) in rest) map[name] = "pytorch_model-00002-of-00002.bin";
        File.WriteAllText(dir.File("pytorch_model.bin.index.json"), JsonSerializer.Serialize(new { metadata = new { total_size = 1 }, weight_map = map }));
        File.WriteAllText(dir.File("config.json"), source.ConfigJson());

        using var loaded = PretrainedModel.Load(dir.Path);
        var values = loaded.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, value) in parameters) TensorAssert.Close(value, values[name], 0);

        map["vit.layernorm.weight"] = "pytorch_model-00002-of-00002.bin";
        File.WriteAllText(dir.File("pytorch_model.bin.index.json"), JsonSerializer.Serialize(new { weight_map = map }));
        var error = Assert.Throws<BadInputException>(() => TensorCheckpoint.Open(dir.Path));
        Assert.Contains("vit.layernorm.weight", error.Message);
        Assert.Contains("00002-of-00002", error.File);
    }

    [Fact]
    public void An_adapter_model_bin_loads_and_a_code_running_pickle_is_refused()
    {
        using var dir = new TempDirectory();
        using var model = Tiny(43);
        var plan = RoutingPeftPresets.Roberta("roberta-lora", 2);
        var peft = plan.Apply(model)!;
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters().Where(p => p.name.Contains("lora_"))) p.normal_();
        PeftFiles.Save(peft, dir.File("saved"));
        // The same tensors as HF PEFT writes them with safe_serialization=False.
        Directory.CreateDirectory(dir.File("pickled"));
        File.Copy(dir.File("saved/adapter_config.json"), dir.File("pickled/adapter_config.json"));
        using (var saved = TensorCheckpoint.Open(dir.File("saved/adapter_model.safetensors")))
            Save(dir.File("pickled/adapter_model.bin"), saved.Entries.Select(e => (e.Name, saved.ReadTensor(e.Name))).ToList());

        using var fresh = Tiny(43);
        PeftFiles.Load(fresh, dir.File("pickled"));
        var expected = model.named_parameters().Where(p => p.name.Contains("lora_")).ToDictionary(p => p.name, p => p.parameter);
        var got = fresh.named_parameters().Where(p => p.name.Contains("lora_")).ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(expected.Count, got.Count);
        foreach (var (name, value) in expected) TensorAssert.Close(value, got[name], 0);

        // A pickle that would call os.system is refused before any tensor is used.
        var writer = new TorchSaveWriter();
        File.Delete(dir.File("pickled/adapter_model.bin"));
        writer.Write(dir.File("pickled/adapter_model.bin"), new Dictionary<string, object> { ["x"] = TorchSaveWriter.SystemCall("true") });
        using var third = Tiny(43);
        var error = Assert.Throws<BadInputException>(() => PeftFiles.Load(third, dir.File("pickled")));
        Assert.Contains("os.system", error.Message);
    }
}
