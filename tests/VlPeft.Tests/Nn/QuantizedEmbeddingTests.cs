using TorchSharp;
using VlPeft.Models;
using VlPeft.Models.Configs;
using VlPeft.Models.Loading;
using VlPeft.Models.Multimodal;
using VlPeft.Nn.Quantization;
using VlPeft.Tests.Peft;
using static TorchSharp.torch;
using Embedding = VlPeft.Nn.Embedding;

namespace VlPeft.Tests.Nn;

/// <summary>
/// Token tables held quantized (model.quantize_embeddings): lookups and tied heads against the same operations on the
/// dequantized table (whose values QuantizationTests check against the formulas), loading, saving and the byte counts.
/// </summary>
public class QuantizedEmbeddingTests
{
    static Embedding Table(long count, long dim, string format, bool doubleQuant = true, int seed = 3)
    {
        torch.manual_seed(seed);
        var table = new Embedding(count, dim, tokenTable: true);
        table.weight.requires_grad = false;
        table.Quantize(format, doubleQuant);
        return table;
    }

    public static TheoryData<string, bool, long> Layouts => new()
    {
        { "nf4", true, 133 },    // odd width: rows start in the middle of a byte and of a 64-value block
        { "nf4", false, 133 },
        { "nf4", true, 128 },
        { "int8", false, 133 },
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void A_lookup_decodes_the_picked_rows_to_the_bits_of_the_whole_dequantized_table(string format, bool doubleQuant, long dim)
    {
        using var table = Table(37, dim, format, doubleQuant);
        // More ids than rows (a batch repeats tokens), the first and last rows among them.
        torch.manual_seed(8);
        using var ids = torch.cat(new[] { torch.tensor(new long[] { 3, 36, 0, 17, 17, 5 }), torch.randint(37, 94, dtype: ScalarType.Int64) }).view(4, 25);
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var whole = table.Quantized!.Dequantize(dtype, DequantizeKernel.LibTorch);
            using var expected = whole.index_select(0, ids.flatten());
            var kernels = new List<DequantizeKernel> { DequantizeKernel.LibTorch };
            for (var k = DequantizeKernel.Scalar; k <= NativeDequantize.Best; k++) kernels.Add(k);
            foreach (var kernel in kernels)
            {
                using var rows = table.Quantized.DequantizeRows(ids, dtype, kernel);
                Assert.Equal(dtype, rows.dtype);
                Assert.True(expected.eq(rows).all().item<bool>(), $"{format} {dtype} {kernel}: rows differ from the dequantized table's");
            }
        }
    }

    [Fact]
    public void The_module_looks_up_in_its_compute_dtype_and_a_dtype_move_keeps_the_codes()
    {
        using var table = Table(50, 64, "nf4");
        using var ids = torch.tensor(new long[] { 49, 1, 7 });
        using var dense = table.Quantized!.Dequantize(ScalarType.Float32);
        TensorAssert.Close(dense.index_select(0, ids), table.call(ids), 0);
        var codes = table.Quantized;
        table.to(ScalarType.BFloat16);
        Assert.Same(codes, table.Quantized);
        Assert.Equal(ScalarType.BFloat16, table.weight.dtype);
        Assert.All(table.weight.stride(), s => Assert.Equal(0, s));   // still the one-element placeholder
        using var lookedUp = table.call(ids.view(3, 1));
        Assert.Equal(new long[] { 3, 1, 64 }, lookedUp.shape);
        Assert.True(dense.index_select(0, ids).to(ScalarType.BFloat16).view(3, 1, 64).eq(lookedUp).all().item<bool>());
    }

    [Fact]
    public void Ids_outside_the_table_are_refused_with_the_table_size()
    {
        using var table = Table(20, 64, "int8");
        var e = Assert.Throws<BadInputException>(() => table.call(torch.tensor(new long[] { 2, 20 })));
        Assert.Contains("token ids 2…20 are outside the table's 20 rows", e.Message);
    }

    [Theory]
    [InlineData("nf4")]
    [InlineData("int8")]
    public void A_head_tied_to_a_quantized_table_multiplies_by_the_dequantized_table_and_passes_gradients(string format)
    {
        using var table = Table(90, 70, format);
        using var dense = table.Quantized!.Dequantize(ScalarType.Float32);
        var hidden = torch.randn(2, 5, 70).requires_grad_(true);
        var logits = table.Project(hidden);
        TensorAssert.Close(hidden.matmul(dense.t()), logits, 1e-5);
        using var upstream = torch.randn(2, 5, 90);
        (logits * upstream).sum().backward();
        TensorAssert.Close(upstream.matmul(dense), hidden.grad!, 1e-5);
    }

    [Fact]
    public void A_trainable_table_is_not_quantized_and_dequantizing_restores_a_dense_table()
    {
        using var trainable = new Embedding(10, 64, tokenTable: true);
        Assert.Contains("trainable embedding table cannot be quantized", Assert.Throws<BadInputException>(() => trainable.Quantize("nf4")).Message);
        using var table = Table(10, 64, "nf4");
        using var dense = table.Quantized!.Dequantize(ScalarType.Float32);
        table.Dequantize();
        Assert.Null(table.Quantized);
        TensorAssert.Close(dense, table.weight, 0);
    }

    [Fact]
    public void Opt_with_its_head_tied_to_a_quantized_table_gives_the_logits_of_the_dense_table_of_the_same_values()
    {
        var config = ModelPresets.Get("tiny-blip2-opt");
        using var quantized = new BlipForConditionalGeneration(config);
        using var dense = new BlipForConditionalGeneration(config);
        // The same weights by copying (tests run in parallel: a shared seed would not give them).
        var values = quantized.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (torch.no_grad())
            foreach (var (name, p) in dense.named_parameters()) p.copy_(values[name]);
        var parts = QuantizationPlan.Parse(new Dictionary<object, object> { ["language_model"] = "nf4" }, quantized, "test");
        QuantizationPlan.Apply(quantized, parts, embeddings: true);
        QuantizationPlan.Apply(dense, parts);
        const string tableName = "language_model.model.decoder.embed_tokens";
        var table = (Embedding)quantized.named_modules().Single(m => m.name == tableName).module;
        Assert.NotNull(table.Quantized);
        var denseTable = dense.named_parameters().Single(p => p.name == tableName + ".weight").parameter;
        using (torch.no_grad()) denseTable.copy_(table.Quantized!.Dequantize(ScalarType.Float32));
        // Position tables stay dense: only token tables are quantized.
        Assert.Null(((Embedding)quantized.named_modules().Single(m => m.name == "language_model.model.decoder.embed_positions").module).Quantized);

        quantized.eval();
        dense.eval();
        torch.manual_seed(5);
        using var pixels = torch.randn(2, 3, config.Vision.ImageSize, config.Vision.ImageSize);
        using var ids = torch.tensor(new long[] { 2, 20, 30, 2, 40, 1 }).view(2, 3);
        using var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 0 }).view(2, 3);
        using var _ = torch.no_grad();
        var expected = dense.call(new VisionLanguageInputs(pixels, ids, mask)).Logits;
        var actual = quantized.call(new VisionLanguageInputs(pixels, ids, mask)).Logits;
        TensorAssert.Close(expected, actual, 1e-5);
    }

    [Fact]
    public void Loading_quantizes_the_llama_token_table_as_it_arrives_and_saving_writes_it_dequantized()
    {
        using var dir = new TempDirectory();
        string path = RepoPath.Of("models", "tiny-lavin");
        using var streamed = PretrainedModel.Load(path, new PretrainedOptions { Quantize = "nf4", QuantizeEmbeddings = true });
        using var after = PretrainedModel.Load(path);
        QuantizationPlan.Apply(after, QuantizationPlan.Parse("nf4", after, "test"), embeddings: true);
        var tables = streamed.named_modules().Where(m => m.module is Embedding { Quantized: not null }).Select(m => m.name).ToList();
        Assert.Equal(new[] { "language_model.model.embed_tokens" }, tables);   // LaVIN's modality embedding (connector) stays
        var streamedTable = (Embedding)streamed.named_modules().Single(m => m.name == tables[0]).module;
        var afterTable = (Embedding)after.named_modules().Single(m => m.name == tables[0]).module;
        using var values = afterTable.Quantized!.Dequantize(ScalarType.Float32);
        TensorAssert.Close(values, streamedTable.Quantized!.Dequantize(ScalarType.Float32), 0);
        Assert.All(streamedTable.weight.stride(), s => Assert.Equal(0, s));

        PretrainedModel.Save(streamed, dir.File("saved"));
        using var reloaded = PretrainedModel.Load(dir.File("saved"));
        var reloadedTable = (Embedding)reloaded.named_modules().Single(m => m.name == tables[0]).module;
        Assert.Null(reloadedTable.Quantized);   // Transformers reads tables in full precision, so they are written so
        TensorAssert.Close(values, reloadedTable.weight, 0);
        Assert.NotNull(((VlPeft.Nn.Linear)reloaded.named_modules().Single(m => m.name == "language_model.lm_head").module).Quantized);
    }

    [Fact]
    public void Quantizing_tables_needs_a_quantized_part()
    {
        var e = Assert.Throws<BadInputException>(() => PretrainedModel.Load(RepoPath.Of("models", "tiny-instructblip"), new PretrainedOptions { QuantizeEmbeddings = true }));
        Assert.Contains("model.quantize_embeddings quantizes the token tables of the quantized parts: set model.quantize", e.Message);
    }

    [Fact]
    public void Params_counts_a_quantized_token_table_by_the_format_formula()
    {
        using var model = ModelFamilies.FromPreset("tiny-lavin", new ModelBuildOptions { Device = torch.META });
        var rows = VlPeft.Analysis.WeightBytes.Of(model).ToDictionary(r => r.Name);
        var lm = rows["language_model"];
        var table = model.named_parameters().Single(p => p.name == "language_model.model.embed_tokens.weight").parameter;
        long vocabulary = table.shape[0], dim = table.shape[1];
        Assert.Equal(lm.Nf4 - 2 * vocabulary * dim + QuantizedWeight.BytesFor("nf4", vocabulary, dim, 2), lm.Nf4Tables);
        Assert.Equal(lm.Int8 - 2 * vocabulary * dim + vocabulary * dim + 4 * vocabulary, lm.Int8Tables);
        var connector = rows["adapter_modality_embedding"];   // trained, not a tower: fp32 in every column
        Assert.Equal(connector.Fp32, connector.Nf4Tables);
        Assert.Equal(rows["vision_model"].Nf4, rows["vision_model"].Nf4Tables);   // no token table in the vision tower
    }
}
