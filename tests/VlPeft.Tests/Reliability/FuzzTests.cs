using System.Text;
using TorchSharp;
using VlPeft.Data.ScienceQa;
using VlPeft.Experiments;
using VlPeft.Imaging;
using VlPeft.Peft;
using VlPeft.Tensors;
using VlPeft.Tests.Tensors;
using static TorchSharp.torch;

namespace VlPeft.Tests.Reliability;

/// <summary>
/// Seeded mutations of every input format run through the real readers: each mutant must either read or fail with a
/// <see cref="BadInputException"/> (no other exception type, no native crash), and no read may allocate beyond a bound.
/// </summary>
public class FuzzTests
{
    const int Mutants = 150;
    const long AllocationBound = 256L << 20;   // managed bytes one read of a small mutant may allocate

    /// <summary>Flips, overwrites, inserts, deletes or truncates bytes; strategies mix as a fuzzer's would.</summary>
    static byte[] Mutate(byte[] original, Random r)
    {
        var bytes = original.ToList();
        int edits = 1 + r.Next(4);
        for (int e = 0; e < edits && bytes.Count > 0; e++)
        {
            int at = r.Next(bytes.Count);
            switch (r.Next(6))
            {
                case 0: bytes[at] ^= (byte)(1 << r.Next(8)); break;
                case 1: bytes[at] = (byte)r.Next(256); break;
                case 2: bytes.Insert(at, (byte)r.Next(256)); break;
                case 3: bytes.RemoveAt(at); break;
                case 4: bytes.RemoveRange(at, bytes.Count - at); break;                              // truncate
                default: bytes[at] = new byte[] { 0, 0xff, (byte)'9', (byte)'-', (byte)'"', (byte)'{' }[r.Next(6)]; break;
            }
        }
        return bytes.ToArray();
    }

    static void Fuzz(string name, byte[] seedBytes, string extension, Action<string> read, int seed)
    {
        using var dir = new TempDirectory();
        var random = new Random(seed);
        read(WriteFile(dir, "seed" + extension, seedBytes));                                          // the unmutated input reads
        int rejected = 0;
        for (int i = 0; i < Mutants; i++)
        {
            string path = WriteFile(dir, $"m{i}{extension}", Mutate(seedBytes, random));
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var scope = torch.NewDisposeScope();
                read(path);
            }
            catch (BadInputException)
            {
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"{name} mutant {i}: {e.GetType().Name} escaped: {e.Message}");
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated < AllocationBound, $"{name} mutant {i} allocated {allocated:N0} bytes");
        }
        Assert.True(rejected > 0, $"{name}: no mutant was rejected, so the fuzzing did not reach the checks");
    }

    static string WriteFile(TempDirectory dir, string name, byte[] bytes)
    {
        File.WriteAllBytes(dir.File(name), bytes);
        return dir.File(name);
    }

    [Fact]
    public void Safetensors_files()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("s.safetensors"), new Dictionary<string, Tensor>
        {
            ["a.weight"] = torch.randn(3, 4), ["b"] = torch.arange(5), ["c"] = torch.ones(2, dtype: ScalarType.BFloat16),
        }, new Dictionary<string, string> { ["format"] = "pt" });
        Fuzz("safetensors", File.ReadAllBytes(dir.File("s.safetensors")), ".safetensors", path =>
        {
            using var file = SafetensorsFile.Open(path);
            foreach (var t in file.ReadAll().Values) t.Dispose();
        }, seed: 1);
    }

    [Fact]
    public void Pth_zips_and_their_pickles()
    {
        using var dir = new TempDirectory();
        var writer = new TorchSaveWriter();
        writer.AddStorage("0", torch.randn(12));
        writer.AddStorage("1", torch.arange(3));
        writer.Write(dir.File("c.pth"), new Dictionary<string, object>
        {
            ["model"] = new Dictionary<string, object>
            {
                ["w"] = new TorchSaveWriter.View("0", 0, new long[] { 3, 4 }, new long[] { 4, 1 }),
                ["t"] = new TorchSaveWriter.View("0", 1, new long[] { 4, 2 }, new long[] { 1, 4 }),
                ["i"] = new TorchSaveWriter.View("1", 0, new long[] { 3 }, new long[] { 1 }),
            },
            ["epoch"] = 3,
        });
        Fuzz("pth zip", File.ReadAllBytes(dir.File("c.pth")), ".pth", path => PthFile.ReadTensors(path), seed: 2);

        // The pickle alone, mutated inside a well-formed zip.
        var pickle = System.IO.Compression.ZipFile.OpenRead(dir.File("c.pth")).GetEntry("archive/data.pkl")!;
        byte[] pickleBytes;
        using (var s = pickle.Open()) { var m = new MemoryStream(); s.CopyTo(m); pickleBytes = m.ToArray(); }
        var random = new Random(3);
        Fuzz("pth pickle", pickleBytes, ".pkl", path =>
        {
            writer.RawPickle = File.ReadAllBytes(path);
            string zip = path + ".pth";
            writer.Write(zip, new Dictionary<string, object>());
            PthFile.ReadTensors(zip);
        }, seed: 4);

        // The legacy (pre-1.6) layout: pickles, key list and raw storages in one stream.
        var legacy = new TorchSaveWriter();
        legacy.AddStorage("0", torch.randn(12));
        legacy.AddStorage("1", torch.arange(3));
        legacy.WriteLegacy(dir.File("old.pth"), new Dictionary<string, object>
        {
            ["w"] = new TorchSaveWriter.View("0", 0, new long[] { 3, 4 }, new long[] { 4, 1 }),
            ["i"] = new TorchSaveWriter.View("1", 0, new long[] { 3 }, new long[] { 1 }),
        });
        Fuzz("pth legacy", File.ReadAllBytes(dir.File("old.pth")), ".pth", path => PthFile.ReadTensors(path), seed: 6);
    }

    [Fact]
    public void Adapter_configs()
    {
        var config = new VlPeft.Peft.Lora.LoraConfig { R = 4, LoraAlpha = 8, TargetModules = ModuleSelector.FromNames("q", "v"), RankPattern = new Dictionary<string, int> { ["q"] = 2 } };
        Fuzz("adapter_config.json", Encoding.UTF8.GetBytes(config.ToJsonText()), ".json", path => PeftConfig.Parse(File.ReadAllText(path), path), seed: 5);
        var bottleneck = new VlPeft.Peft.Bottleneck.BottleneckConfig { AdapterDim = 8, Router = true, TargetModules = ModuleSelector.FromRegex(".*adapter_before_attention") };
        Fuzz("bottleneck adapter_config.json", Encoding.UTF8.GetBytes(bottleneck.ToJsonText()), ".json", path => PeftConfig.Parse(File.ReadAllText(path), path), seed: 6);
    }

    [Fact]
    public void Experiment_files()
    {
        var yaml = File.ReadAllBytes(RepoPath.Of("configs", "bottleneck-adapter", "bottleneck-adapter-7b-sqa.yaml"));
        Fuzz("experiment file", yaml, ".yaml", path => ExperimentConfig.Load(path), seed: 7);
    }

    [Fact]
    public void ScienceQa_problems_json()
    {
        var problems = File.ReadAllBytes(SharedData.Path("scienceqa", "problems_sample.json"));
        Fuzz("problems.json", problems, ".json", path =>
        {
            var folder = Path.Combine(Path.GetDirectoryName(path)!, Path.GetFileNameWithoutExtension(path));
            Directory.CreateDirectory(folder);
            File.Copy(path, Path.Combine(folder, "problems.json"), overwrite: true);
            ScienceQaReader.Read(folder, split: null);
        }, seed: 8);
    }

    [Fact]
    public void Png_and_jpeg_images()
    {
        using var dir = new TempDirectory();
        var pixels = new byte[16 * 16 * 3];
        new Random(9).NextBytes(pixels);
        PngWriter.Write(dir.File("i.png"), 16, 16, pixels);
        Fuzz("png", File.ReadAllBytes(dir.File("i.png")), ".png", path => ImagePipeline.Decode(path).Dispose(), seed: 10);
        // A baseline JPEG (8×8 gray), as a camera would write its smallest file.
        var jpeg = Convert.FromBase64String("/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAAIAAgBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AVN//2Q==");
        Fuzz("jpeg", jpeg, ".jpg", path => ImagePipeline.Decode(path).Dispose(), seed: 11);
    }
}
