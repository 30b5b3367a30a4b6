using Parquet.Serialization;
using VlPeft.Data.ScienceQa;
using VlPeft.Imaging;
using static VlPeft.Data.ScienceQa.ScienceQaParquetReader;

namespace VlPeft.Tests.Data;

public class ScienceQaParquetTests
{
    [Fact]
    public async Task Rows_map_to_pids_by_position_and_images_become_files()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("pid_splits.json"), "{\"val\": [\"23\", \"4\"]}");
        PngWriter.Write(dir.File("img.png"), 2, 2, new byte[12]);
        var rows = new List<Row>
        {
            new() { image = new HfImage { bytes = File.ReadAllBytes(dir.File("img.png")), path = null }, question = "Which organism?", choices = new() { "bilberry", "mushroom" }, answer = 1, hint = "A food web.", subject = "natural science", grade = "grade5", topic = "biology" },
            new() { image = null, question = "Which word?", choices = new() { "a", "b", "c" }, answer = 0, subject = "language science", grade = "grade2", topic = "vocabulary" },
        };
        await using (var stream = File.Create(dir.File("validation.parquet")))
            await ParquetSerializer.SerializeAsync(rows, stream);

        var records = ScienceQaParquetReader.Read(dir.File("validation.parquet"), dir.File("pid_splits.json"), "validation", dir.File("cache"));
        Assert.Equal(new[] { "23", "4" }, records.Select(r => r.Id));
        Assert.True(records[0].HasImage);
        Assert.Equal(dir.File("cache/val/23/image.png"), records[0].ImagePath);
        Assert.Equal(new long[] { 3, 2, 2 }, ImagePipeline.Decode(records[0].ImagePath!).shape);
        Assert.False(records[1].HasImage);
        Assert.Equal("mushroom", records[0].AnswerText);

        File.WriteAllText(dir.File("pid_splits.json"), "{\"val\": [\"../../escape\", \"4\"]}");                 // a pid must not leave the cache
        var traversal = Assert.Throws<BadInputException>(() => ScienceQaParquetReader.Read(dir.File("validation.parquet"), dir.File("pid_splits.json"), "validation", dir.File("cache2")));
        Assert.Contains("not a plain folder name", traversal.Message);
        Assert.False(Directory.Exists(dir.File("escape")));

        File.WriteAllText(dir.File("pid_splits.json"), "{\"val\": [\"23\"]}");
        Assert.Contains("cannot be matched to pids", Assert.Throws<BadInputException>(() => ScienceQaParquetReader.Read(dir.File("validation.parquet"), dir.File("pid_splits.json"), "validation", dir.File("cache"))).Message);
    }
}
