using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;
using VlPeft.Training;

namespace VlPeft.Experiments;

/// <summary>
/// An experiment file (configs/*.yaml). Model and data locations may be left empty and given on the
/// command line (<c>--model</c>, <c>--data</c>); a run fails fast, naming what is missing.
/// </summary>
public sealed class ExperimentConfig
{
    public string Name { get; set; } = "";
    /// <summary>scienceqa, iconqa or captions.</summary>
    public string Task { get; set; } = "scienceqa";
    public string? Data { get; set; }
    /// <summary>ScienceQA: keep only problems with an image (ScienceQA-IMG), as the paper does.</summary>
    public bool ImageOnly { get; set; } = true;
    /// <summary>Text-only baseline: every image is replaced by a blank one, in training and evaluation.</summary>
    public bool TextOnly { get; set; }
    public ModelSection Model { get; set; } = new();
    /// <summary>
    /// The PEFT plan (<see cref="PeftPlan"/>): <c>preset:</c> (a PEFT preset of the model's family, or <c>full</c>)
    /// and/or the adapter_config.json keys of any registered method (<c>peft_type</c>, <c>r</c>, <c>target_modules</c>, …)
    /// overriding the preset's, plus <c>train_in_full:</c> module paths trained in full beside the adapter.
    /// </summary>
    public Dictionary<string, object?> Peft { get; set; } = new();
    public TrainingSection Training { get; set; } = new();
    public string? Output { get; set; }

    public sealed class ModelSection
    {
        /// <summary>A HF checkpoint directory; required unless <see cref="FromScratch"/>.</summary>
        public string? Path { get; set; }
        /// <summary>The preset the checkpoint must match (checked), or the one built from scratch.</summary>
        public string? Preset { get; set; }
        /// <summary>Pretraining: build the preset with fresh weights and a vocabulary made from the data.</summary>
        public bool FromScratch { get; set; }
        /// <summary>f32 or bf16 for the frozen base.</summary>
        public string Dtype { get; set; } = "f32";
    }

    public sealed class TrainingSection
    {
        public double Lr { get; set; } = 5e-4;
        public double MinLr { get; set; }
        public string Schedule { get; set; } = LearningRateSchedule.LinearDecayPerEpoch;
        public int WarmupSteps { get; set; }
        public double WeightDecay { get; set; } = 0.05;
        public int Epochs { get; set; } = 15;
        public int BatchSize { get; set; } = 16;
        public int GradientAccumulation { get; set; } = 1;
        public double? MaxGradNorm { get; set; }
        public int? Patience { get; set; } = 3;
        public int Seed { get; set; } = 42;
        /// <summary>
        /// LAVIS's training image augmentation (random resized crop, horizontal flip). Turn it off where
        /// it changes the answer: counting (a crop drops shapes) and left/right questions (a flip swaps them).
        /// </summary>
        public bool Augment { get; set; } = true;
        public int? MaxTrainExamples { get; set; }
        public int? MaxEvalExamples { get; set; }
        /// <summary>Learning rates per parameter group of the model (vision, qformer, connector, language_model, …).</summary>
        public Dictionary<string, double>? LrGroups { get; set; }

        /// <summary>Range checks of every number, so a bad value is one clear line before anything runs.</summary>
        public void Validate(string source)
        {
            void Check(bool ok, string key, object? value, string allowed)
            {
                if (!ok) throw new BadInputException($"training: {key} must be {allowed}, got {Format(value)}", source);
            }
            Check(double.IsFinite(Lr) && Lr > 0, "lr", Lr, "a finite number > 0");
            Check(double.IsFinite(MinLr) && MinLr >= 0, "min_lr", MinLr, "a finite number >= 0");
            Check(double.IsFinite(WeightDecay) && WeightDecay >= 0, "weight_decay", WeightDecay, "a finite number >= 0");
            Check(WarmupSteps >= 0, "warmup_steps", WarmupSteps, "an integer >= 0");
            Check(Epochs >= 1, "epochs", Epochs, "an integer >= 1");
            Check(BatchSize >= 1, "batch_size", BatchSize, "an integer >= 1");
            Check(GradientAccumulation >= 1, "gradient_accumulation", GradientAccumulation, "an integer >= 1");
            Check(MaxGradNorm is null || (double.IsFinite(MaxGradNorm.Value) && MaxGradNorm > 0), "max_grad_norm", MaxGradNorm, "a finite number > 0 (or absent)");
            Check(Patience is null or >= 0, "patience", Patience, "an integer >= 0 (or absent)");
            Check(MaxTrainExamples is null or >= 1, "max_train_examples", MaxTrainExamples, "an integer >= 1 (or absent)");
            Check(MaxEvalExamples is null or >= 1, "max_eval_examples", MaxEvalExamples, "an integer >= 1 (or absent)");
            foreach (var (group, lr) in LrGroups ?? new())
                Check(double.IsFinite(lr) && lr > 0, $"lr_groups.{group}", lr, "a finite number > 0");
            if (!LearningRateSchedule.Names.Contains(Schedule))
                throw new BadInputException($"training: schedule must be one of {string.Join(", ", LearningRateSchedule.Names)}, got '{Schedule}'", source);
        }

        static string Format(object? value) => value switch
        {
            null => "nothing",
            double d => d.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => value.ToString()!,
        };

        public TrainerOptions ToOptions(IReadOnlyDictionary<string, double>? prefixLearningRates = null) => new()
        {
            LearningRate = Lr, PrefixLearningRates = prefixLearningRates, MinLearningRate = MinLr, Schedule = Schedule, WarmupSteps = WarmupSteps, WeightDecay = WeightDecay,
            Epochs = Epochs, BatchSize = BatchSize, GradientAccumulation = GradientAccumulation, MaxGradNorm = MaxGradNorm,
            Patience = Patience, Seed = Seed, LogEvery = 5,
        };
    }

    public static ExperimentConfig Load(string path)
    {
        if (!File.Exists(path)) throw new BadInputException("experiment file not found", path);
        try
        {
            var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
            var config = deserializer.Deserialize<ExperimentConfig>(File.ReadAllText(path)) ?? new ExperimentConfig();
            if (config.Name.Length == 0) config.Name = System.IO.Path.GetFileNameWithoutExtension(path);
            config.Training.Validate(path);
            return config;
        }
        catch (YamlException e)
        {
            // YamlDotNet names an unknown key "Property 'x' not found on type …": say it the user's way.
            string message = e.InnerException?.Message ?? e.Message;
            var unknown = System.Text.RegularExpressions.Regex.Match(message, "Property '([^']+)' not found on type '[^']*?([A-Za-z]+)'");
            if (unknown.Success)
                message = $"unknown key '{unknown.Groups[1].Value}' in {SectionName(unknown.Groups[2].Value)}";
            throw new BadInputException($"experiment file is not valid (line {e.Start.Line}): {message}", path);
        }
    }

    static string SectionName(string type) => type switch
    {
        "ModelSection" => "model:",
        "TrainingSection" => "training:",
        _ => "the top level",
    };

    public string ToYaml() => new SerializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build().Serialize(this);
}
