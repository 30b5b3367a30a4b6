using System.Text.Json;
using TorchSharp;
using VlPeft.Peft;
using VlPeft.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Training;

/// <summary>
/// A resumable checkpoint in a folder: the trainable tensors (safetensors), the optimizer state and
/// the trainer state. Written to a temporary folder and swapped in by renames, so a crash leaves
/// either the previous checkpoint or the new one, never half of one.
/// </summary>
public static class TrainingCheckpoint
{
    const string Weights = "trainable.safetensors", Optimizer = "optimizer.bin", State = "state.json";
    const string Allocator = "allocator.safetensors", AllocatorPattern = "allocator_pattern.json";

    public static void Save(string folder, IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable,
        TorchSharp.Modules.OptimizerHelper optimizer, TrainerState state, Peft.AdaLora.RankAllocator? allocator = null)
    {
        string temp = folder + $".tmp-{Guid.NewGuid():N}";
        Directory.CreateDirectory(temp);
        SafetensorsWriter.Write(Path.Combine(temp, Weights), trainable.ToDictionary(t => t.Name, t => (Tensor)t.Parameter));
        optimizer.save_state_dict(Path.Combine(temp, Optimizer));
        File.WriteAllText(Path.Combine(temp, State), JsonSerializer.Serialize(state));
        if (allocator != null)
        {
            SafetensorsWriter.Write(Path.Combine(temp, Allocator), allocator.ExportState());
            File.WriteAllText(Path.Combine(temp, AllocatorPattern), JsonSerializer.Serialize(allocator.RankPattern));
        }
        string old = folder + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, true);
        if (Directory.Exists(folder)) Directory.Move(folder, old);
        Directory.Move(temp, folder);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    /// <summary>The checkpoint folder to resume from (the previous one if a swap was interrupted), or null.</summary>
    public static string? Find(string folder) =>
        File.Exists(Path.Combine(folder, State)) ? folder : File.Exists(Path.Combine(folder + ".old", State)) ? folder + ".old" : null;

    public static TrainerState Load(string folder, IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable,
        TorchSharp.Modules.OptimizerHelper optimizer, Peft.AdaLora.RankAllocator? allocator = null)
    {
        var state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(Path.Combine(folder, State)))
            ?? throw new BadInputException("checkpoint state is empty", Path.Combine(folder, State));
        using var file = SafetensorsFile.Open(Path.Combine(folder, Weights));
        using (torch.no_grad())
            foreach (var (name, p) in trainable)
            {
                if (!file.Header.Contains(name)) throw new BadInputException($"checkpoint lacks trainable tensor '{name}' (different model or PEFT setup?)", file.Path);
                using var value = file.ReadTensor(name);
                p.copy_(value);
            }
        optimizer.load_state_dict(Path.Combine(folder, Optimizer));
        if (allocator != null && File.Exists(Path.Combine(folder, Allocator)))
        {
            using var saved = SafetensorsFile.Open(Path.Combine(folder, Allocator));
            var pattern = JsonSerializer.Deserialize<Dictionary<string, bool[]>?>(File.ReadAllText(Path.Combine(folder, AllocatorPattern)));
            allocator.ImportState(saved.ReadAll(), pattern);
        }
        return state;
    }
}
