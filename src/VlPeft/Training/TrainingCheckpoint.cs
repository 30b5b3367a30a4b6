using System.Text.Json;
using TorchSharp;
using VlPeft.Peft;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Training;

/// <summary>
/// A resumable checkpoint in a folder: the trainable tensors (safetensors), the optimizer state, the
/// trainer state, and the PEFT tuners' own state (AdaLoRA's allocator), one tensor file + JSON per adapter. Written to a temporary folder and swapped in by renames, so a crash leaves
/// either the previous checkpoint or the new one, never half of one.
/// </summary>
public static class TrainingCheckpoint
{
    const string Weights = "trainable.safetensors", Optimizer = "optimizer.bin", State = "state.json";
    const string TunerTensors = "tuner-{0}.safetensors", TunerJson = "tuner-{0}.json";

    public static void Save(string folder, IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable,
        TorchSharp.Modules.OptimizerHelper optimizer, TrainerState state, PeftModel? peft = null)
    {
        string temp = folder + $".tmp-{Guid.NewGuid():N}";
        Directory.CreateDirectory(temp);
        SafetensorsWriter.Write(Path.Combine(temp, Weights), trainable.ToDictionary(t => t.Name, t => (Tensor)t.Parameter));
        optimizer.save_state_dict(Path.Combine(temp, Optimizer));
        File.WriteAllText(Path.Combine(temp, State), JsonSerializer.Serialize(state));
        foreach (var (adapter, tunerState) in peft?.ExportTrainingState() ?? new Dictionary<string, TunerState>())
        {
            SafetensorsWriter.Write(Path.Combine(temp, string.Format(TunerTensors, adapter)), tunerState.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value));
            File.WriteAllText(Path.Combine(temp, string.Format(TunerJson, adapter)), tunerState.Json);
        }
        // On disk before it becomes the checkpoint: a power loss must not leave a renamed but empty folder.
        Durability.SyncTree(temp);
        string old = folder + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, true);
        if (Directory.Exists(folder)) Directory.Move(folder, old);
        Directory.Move(temp, folder);
        Durability.SyncFolder(Path.GetDirectoryName(folder)!);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    /// <summary>Removes temporary checkpoint folders a killed run left beside <paramref name="folder"/>.</summary>
    public static void RemoveLeftovers(string folder)
    {
        string parent = Path.GetDirectoryName(folder)!;
        if (!Directory.Exists(parent)) return;
        foreach (var leftover in Directory.GetDirectories(parent, Path.GetFileName(folder) + ".tmp-*"))
            Directory.Delete(leftover, recursive: true);
    }

    /// <summary>The checkpoint folder to resume from (the previous one if a swap was interrupted), or null.</summary>
    public static string? Find(string folder) =>
        File.Exists(Path.Combine(folder, State)) ? folder : File.Exists(Path.Combine(folder + ".old", State)) ? folder + ".old" : null;

    public static TrainerState Load(string folder, IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable,
        TorchSharp.Modules.OptimizerHelper optimizer, PeftModel? peft = null)
    {
        string statePath = Path.Combine(folder, State);
        TrainerState state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath)) ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new BadInputException($"checkpoint state is damaged ({e.Message}); resume from checkpoints/best or start again", statePath);
        }
        using var file = SafetensorsFile.Open(Path.Combine(folder, Weights));
        using (torch.no_grad())
            foreach (var (name, p) in trainable)
            {
                if (!file.Header.Contains(name)) throw new BadInputException($"checkpoint lacks trainable tensor '{name}' (different model or PEFT setup?)", file.Path);
                using var value = file.ReadTensor(name);
                if (!value.shape.SequenceEqual(p.shape))
                    throw new BadInputException($"checkpoint tensor '{name}' has shape [{string.Join(", ", value.shape)}] but this run's is [{string.Join(", ", p.shape)}] (different PEFT settings, e.g. the rank?)", file.Path);
                p.copy_(value);
            }
        string optimizerPath = Path.Combine(folder, Optimizer);
        try
        {
            optimizer.load_state_dict(optimizerPath);
        }
        catch (Exception e) when (e is not BadInputException and not OutOfMemoryException)
        {
            throw new BadInputException($"optimizer state cannot be read ({e.Message}); resume from checkpoints/best or start again", optimizerPath);
        }
        if (peft != null)
        {
            var states = new Dictionary<string, TunerState>();
            foreach (var adapter in peft.Configs.Keys)
            {
                string tensors = Path.Combine(folder, string.Format(TunerTensors, adapter)), json = Path.Combine(folder, string.Format(TunerJson, adapter));
                if (!File.Exists(tensors)) continue;
                using var saved = SafetensorsFile.Open(tensors);
                states[adapter] = new TunerState(saved.ReadAll(), File.ReadAllText(json));
            }
            peft.ImportTrainingState(states);
        }
        return state;
    }
}
