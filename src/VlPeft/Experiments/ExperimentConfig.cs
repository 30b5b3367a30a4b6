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
    /// <summary>One of <see cref="Tasks"/>.</summary>
    public string Task { get; set; } = "scienceqa";

    /// <summary>
    /// scienceqa, iconqa (multiple choice), captions (Karpathy captions: the tiny InstructBLIP's pretraining, or the GPT-2
    /// captioner's fine-tuning, tested by CIDEr-D), vqav2 (VL-T5 Karpathy VQAv2 for the answer classifier, tested by VQA
    /// accuracy), tower_pretraining (the routing models' towers pretrained apart on captions).
    /// </summary>
    public static readonly string[] Tasks = { "scienceqa", "iconqa", "captions", "vqav2", "tower_pretraining" };
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
    public EvaluationSection Evaluation { get; set; } = new();
    /// <summary>
    /// The multiple-choice prompt: <c>instructblip</c> (the Q-Former PEFT paper's templates, "(a) choice" targets) or
    /// <c>lavin_qcm_ale</c> (ScienceQA only: LaVIN's QCM-ALE prompt, target "The answer is X. BECAUSE: …").
    /// </summary>
    public string Prompt { get; set; } = InstructBlipPrompt;
    public string? Output { get; set; }

    public const string InstructBlipPrompt = "instructblip", LavinPrompt = "lavin_qcm_ale";

    /// <summary>How the test split is scored.</summary>
    public sealed class EvaluationSection
    {
        /// <summary><c>rank</c>: candidates ranked by LM loss (Q-Former PEFT paper); <c>generate</c>: an answer generated and parsed.</summary>
        public string Mode { get; set; } = "rank";
        /// <summary>Generated text → choice: <c>choice</c> (match the option text), or the ScienceQA rules <c>official</c>, <c>lavin</c>, <c>llava</c>.</summary>
        public string AnswerRule { get; set; } = "choice";
        public int MaxNewTokens { get; set; } = 64;
        /// <summary>0: greedy (LaVIN's setting); the Bottleneck Adapter paper samples with 0.1 and top-p 0.75.</summary>
        public double Temperature { get; set; }
        public double TopP { get; set; } = 1.0;
        public int NumBeams { get; set; } = 1;
        /// <summary>Seeds sampling and the random fallback of the ScienceQA answer rules.</summary>
        public int Seed { get; set; }

        public static readonly string[] Modes = { "rank", "generate" };
        public static readonly string[] AnswerRules = { "choice", "official", "lavin", "llava" };

        public void Validate(string source)
        {
            if (!Modes.Contains(Mode)) throw new BadInputException($"evaluation: mode must be one of {string.Join(", ", Modes)}, got '{Mode}'", source);
            if (!AnswerRules.Contains(AnswerRule)) throw new BadInputException($"evaluation: answer_rule must be one of {string.Join(", ", AnswerRules)}, got '{AnswerRule}'", source);
            if (MaxNewTokens < 1) throw new BadInputException($"evaluation: max_new_tokens must be an integer >= 1, got {MaxNewTokens}", source);
            try
            {
                Generation.Validate();
            }
            catch (BadInputException e)
            {
                throw new BadInputException($"evaluation: {e.Message.Replace("--", "").Replace('-', '_')}", source);
            }
        }

        [YamlIgnore] public Evaluation.GenerationOptions Generation => new() { MaxNewTokens = MaxNewTokens, Temperature = Temperature, TopP = TopP, NumBeams = NumBeams, Seed = Seed };
    }

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
        /// <summary>Quantized frozen linear weights: nf4, int8 or none, or per part ({vision: …, language_model: …}); see <see cref="QuantizationPlan"/>.</summary>
        public object? Quantize { get; set; }
        /// <summary>The quantized parts' token tables are quantized too (off: QLoRA and Transformers keep them in full precision).</summary>
        public bool QuantizeEmbeddings { get; set; }
    }

    public sealed class TrainingSection
    {
        public double Lr { get; set; } = 5e-4;
        public double MinLr { get; set; }
        public string Schedule { get; set; } = LearningRateSchedule.LinearDecayPerEpoch;
        public int WarmupSteps { get; set; }
        /// <summary>Warmup as a fraction of all optimizer steps (HF's warmup_ratio; the routing paper's RoBERTa scripts: 0.05); overrides warmup_steps.</summary>
        public double WarmupRatio { get; set; }
        /// <summary>The warmup of <c>half_cycle_cosine</c>, in epochs (LaVIN: 2).</summary>
        public double WarmupEpochs { get; set; }
        public double WeightDecay { get; set; } = 0.05;
        /// <summary><c>lavis</c> (no decay on biases, norms, 1-D tensors) or <c>timm</c> (no decay on 1-D tensors and *.bias; LaVIN).</summary>
        public string WeightDecayRule { get; set; } = OptimizerFactory.LavisRule;
        public double AdamBeta1 { get; set; } = 0.9;
        /// <summary>LaVIN: 0.95.</summary>
        public double AdamBeta2 { get; set; } = 0.999;
        /// <summary><c>best</c>: test the best validation epoch (Q-Former PEFT paper); <c>last</c>: the last epoch (LaVIN).</summary>
        public string TestCheckpoint { get; set; } = "best";
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
            Check(double.IsFinite(WarmupRatio) && WarmupRatio is >= 0 and < 1, "warmup_ratio", WarmupRatio, "in [0, 1)");
            Check(double.IsFinite(WarmupEpochs) && WarmupEpochs >= 0 && WarmupEpochs < Math.Max(1, Epochs), "warmup_epochs", WarmupEpochs, "a finite number >= 0 and below epochs");
            Check(OptimizerFactory.Rules.Contains(WeightDecayRule), "weight_decay_rule", WeightDecayRule, string.Join(" or ", OptimizerFactory.Rules));
            Check(AdamBeta1 is >= 0 and < 1, "adam_beta1", AdamBeta1, "in [0, 1)");
            Check(AdamBeta2 is >= 0 and < 1, "adam_beta2", AdamBeta2, "in [0, 1)");
            Check(TestCheckpoint is "best" or "last", "test_checkpoint", TestCheckpoint, "best or last");
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

        /// <summary>Optimizer steps of a run over <paramref name="trainCount"/> examples.</summary>
        public int TotalSteps(int trainCount) => ((trainCount + BatchSize - 1) / BatchSize + GradientAccumulation - 1) / GradientAccumulation * Epochs;

        public TrainerOptions ToOptions(int trainCount, IReadOnlyDictionary<string, double>? prefixLearningRates = null) => new()
        {
            LearningRate = Lr, PrefixLearningRates = prefixLearningRates, MinLearningRate = MinLr, Schedule = Schedule,
            WarmupSteps = WarmupRatio > 0 ? (int)Math.Ceiling(WarmupRatio * TotalSteps(trainCount)) : WarmupSteps, WeightDecay = WeightDecay,
            WarmupEpochs = WarmupEpochs, WeightDecayRule = WeightDecayRule, Beta1 = AdamBeta1, Beta2 = AdamBeta2, KeepLast = TestCheckpoint == "last",
            Epochs = Epochs, BatchSize = BatchSize, GradientAccumulation = GradientAccumulation, MaxGradNorm = MaxGradNorm,
            Patience = Patience, Seed = Seed, LogEvery = 5,
        };
    }

    /// <summary>Checks every section's values, naming the file.</summary>
    public void Validate(string source)
    {
        if (!Tasks.Contains(Task)) throw new BadInputException($"task must be one of {string.Join(", ", Tasks)}, got '{Task}'", source);
        Training.Validate(source);
        Evaluation.Validate(source);
        if (Prompt is not (InstructBlipPrompt or LavinPrompt))
            throw new BadInputException($"prompt must be {InstructBlipPrompt} or {LavinPrompt}, got '{Prompt}'", source);
        if (Prompt == LavinPrompt && Task != "scienceqa")
            throw new BadInputException($"prompt {LavinPrompt} is ScienceQA's; task '{Task}' has no lecture or solution to explain with", source);
    }

    public static ExperimentConfig Load(string path)
    {
        if (!File.Exists(path)) throw new BadInputException("experiment file not found", path);
        try
        {
            var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
            var config = deserializer.Deserialize<ExperimentConfig>(File.ReadAllText(path)) ?? new ExperimentConfig();
            if (config.Name.Length == 0) config.Name = System.IO.Path.GetFileNameWithoutExtension(path);
            config.Validate(path);
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
        "EvaluationSection" => "evaluation:",
        _ => "the top level",
    };

    public string ToYaml() => new SerializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build().Serialize(this);
}
