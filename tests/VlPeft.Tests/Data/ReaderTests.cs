using System.Text.Json;
using System.Text.Json.Nodes;
using VlPeft.Data;
using VlPeft.Data.Captions;
using VlPeft.Data.IconQa;
using VlPeft.Data.ScienceQa;
using VlPeft.Data.Vqa;

namespace VlPeft.Tests.Data;

public class ReaderTests
{
    /// <summary>A ScienceQA directory from the real sample: problems.json + pid_splits.json restricted to the sample's pids.</summary>
    public static string ScienceQaFixture(TempDirectory dir)
    {
        File.Copy(SharedData.Path("scienceqa", "problems_sample.json"), dir.File("problems.json"));
        using var problems = JsonDocument.Parse(File.ReadAllText(dir.File("problems.json")));
        var present = problems.RootElement.EnumerateObject().Select(p => p.Name).ToHashSet();
        var splits = JsonNode.Parse(File.ReadAllText(SharedData.Path("scienceqa", "pid_splits.json")))!.AsObject();
        var kept = new JsonObject();
        foreach (var (name, list) in splits)
            kept[name] = new JsonArray(list!.AsArray().Select(p => p!.GetValue<string>()).Where(present.Contains).Select(p => (JsonNode)p).ToArray());
        File.WriteAllText(dir.File("pid_splits.json"), kept.ToJsonString());
        return dir.Path;
    }

    [Fact]
    public void Scienceqa_reads_the_official_files_in_split_order_with_the_img_filter()
    {
        using var dir = new TempDirectory();
        ScienceQaFixture(dir);
        var test = ScienceQaReader.Read(dir.Path, "test").Records;
        Assert.Equal(357, test.Count);
        var officialOrder = JsonNode.Parse(File.ReadAllText(SharedData.Path("scienceqa", "pid_splits.json")))!["test"]!.AsArray().Select(p => p!.GetValue<string>()).ToList();
        Assert.Equal(test.Select(r => r.Id), officialOrder.Where(test.Select(r => r.Id).ToHashSet().Contains));
        var pid23 = test.Single(r => r.Id == "23");
        Assert.Equal(new[] { "bilberry", "mushroom" }, pid23.Choices);
        Assert.Equal(1, pid23.Answer);
        Assert.True(pid23.HasImage && pid23.HasText);
        Assert.Equal(Path.Combine(dir.Path, "images", "test", "23", "image.png"), pid23.ImagePath);
        Assert.Equal("natural science", pid23.Subject);
        Assert.Equal("grade5", pid23.Grade);
        var img = ScienceQaReader.Read(dir.Path, "test", imageOnly: true).Records;
        Assert.Equal(test.Count(r => r.HasImage), img.Count);
        // Cross-check against the captions file: the image flag equals membership in captions.json.
        var captioned = JsonNode.Parse(File.ReadAllText(SharedData.Path("scienceqa", "captions.json")))!["captions"]!.AsObject().Select(p => p.Key).ToHashSet();
        Assert.All(test, r => Assert.Equal(captioned.Contains(r.Id), r.HasImage));
    }

    [Fact]
    public void Scienceqa_bad_input_is_named()
    {
        using var dir = new TempDirectory();
        ScienceQaFixture(dir);
        var split = Assert.Throws<BadInputException>(() => ScienceQaReader.Read(dir.Path, "tset"));
        Assert.Contains("unknown split 'tset'", split.Message);
        Assert.Contains("minitest", split.Message);

        var images = Assert.Throws<BadInputException>(() => ScienceQaReader.Read(dir.Path, "test", options: new ReadOptions { RequireImages = true }));
        Assert.Contains("image file is missing", images.Message);
        Assert.StartsWith("record ", images.Message);

        var problems = JsonNode.Parse(File.ReadAllText(dir.File("problems.json")))!.AsObject();
        problems["23"]!["answer"] = 7;
        problems["4"]!["image"] = "../../../../etc/passwd"; // images/<split>/<pid>/ + four levels up leaves the root
        problems["5"]!.AsObject().Remove("question");
        File.WriteAllText(dir.File("problems.json"), problems.ToJsonString());
        var e = Assert.Throws<BadInputException>(() => ScienceQaReader.Read(dir.Path, null));
        Assert.Contains("record", e.Message);
        Assert.Equal(dir.File("problems.json"), e.File);
        var skipped = ScienceQaReader.Read(dir.Path, null, options: new ReadOptions { SkipBadRecords = true });
        Assert.Equal(3, skipped.Skipped.Count);
        Assert.Contains(skipped.Skipped, s => s.Contains("record 23: answer 7 is not an index"));
        Assert.Contains(skipped.Skipped, s => s.Contains("record 4: image path") && s.Contains("leaves the dataset root"));
        Assert.Contains(skipped.Skipped, s => s.Contains("record 5: missing field 'question'"));
        Assert.Equal(355, skipped.Records.Count);

        File.WriteAllText(dir.File("problems.json"), "{\"1\": ");
        Assert.Contains("not valid JSON", Assert.Throws<BadInputException>(() => ScienceQaReader.Read(dir.Path, null)).Message);
        Assert.Contains("file not found", Assert.Throws<BadInputException>(() => ScienceQaReader.Read(dir.File("nothing"), null)).Message);
    }

    static void IconFolder(string root, string split, string qid, string json)
    {
        Directory.CreateDirectory(Path.Combine(root, split, "choose_txt", qid));
        File.WriteAllText(Path.Combine(root, split, "choose_txt", qid, "data.json"), json);
    }

    [Fact]
    public void Iconqa_reads_both_released_forms()
    {
        using var dir = new TempDirectory();
        IconFolder(dir.Path, "test", "12", "{\"question\":\"How likely is it that you will pick a black one?\",\"choices\":[\"certain\",\"unlikely\",\"impossible\",\"probable\"],\"answer\":2,\"ques_type\":\"choose_txt\",\"grade\":\"grade1\",\"label\":\"S2\"}");
        IconFolder(dir.Path, "test", "7", "{\"question\":\"Which is bigger?\",\"choices\":[\"a\",\"b\"],\"answer\":0,\"ques_type\":\"choose_txt\"}");
        var records = IconQaReader.Read(dir.Path, "test").Records;
        Assert.Equal(new[] { "7", "12" }, records.Select(r => r.Id));
        Assert.Equal("impossible", records[1].AnswerText);
        Assert.EndsWith(Path.Combine("test", "choose_txt", "12", "image.png"), records[1].ImagePath);
        Assert.Contains("unknown split 'dev'", Assert.Throws<BadInputException>(() => IconQaReader.Read(dir.Path, "dev")).Message);

        using var problems = new TempDirectory();
        File.WriteAllText(problems.File("problems.json"), "{\"5\":{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":1,\"ques_type\":\"choose_txt\",\"split\":\"val\"}}");
        File.WriteAllText(problems.File("pid_splits.json"), "{\"choose_txt_val\":[\"5\"]}");
        var val = IconQaReader.Read(problems.Path, "val").Records.Single();
        Assert.Equal(Path.Combine(problems.Path, "iconqa", "val", "choose_txt", "5", "image.png"), val.ImagePath);
    }

    [Fact]
    public void Vqa_joins_questions_and_annotations_and_names_orphans()
    {
        using var dir = new TempDirectory();
        var (q, a) = VqaReader.FilesIn(dir.Path, "val2014");
        File.WriteAllText(q, "{\"questions\":[{\"image_id\":262146,\"question\":\"What color is the snow board?\",\"question_id\":262146002}]}");
        File.WriteAllText(a, "{\"annotations\":[{\"question_id\":262146002,\"image_id\":262146,\"question_type\":\"what color is the\",\"answer_type\":\"other\",\"multiple_choice_answer\":\"red\",\"answers\":["
            + string.Join(",", Enumerable.Range(1, 10).Select(i => $"{{\"answer\":\"{(i <= 7 ? "red" : "red and white")}\",\"answer_confidence\":\"yes\",\"answer_id\":{i}}}")) + "]}]}");
        var record = VqaReader.Read(q, a, "/images", "val2014").Single();
        Assert.Equal("262146002", record.Id);
        Assert.Equal(10, record.Answers.Count);
        Assert.Equal("what color is the", record.QuestionType);
        Assert.Equal("/images/COCO_val2014_000000262146.jpg", record.ImagePath);
        File.WriteAllText(q, "{\"questions\":[{\"image_id\":1,\"question\":\"?\",\"question_id\":5}]}");
        Assert.Contains("record 5: has no annotation", Assert.Throws<BadInputException>(() => VqaReader.Read(q, a)).Message);
    }

    [Fact]
    public void Vizwiz_and_caption_files_read_as_released()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("val.json"), "[{\"image\":\"VizWiz_val_00000000.jpg\",\"question\":\"What is this?\",\"answers\":[{\"answer\":\"unanswerable\",\"answer_confidence\":\"yes\"}],\"answer_type\":\"unanswerable\",\"answerable\":0}]");
        var viz = VizWizReader.Read(dir.File("val.json")).Single();
        Assert.Equal("VizWiz_val_00000000.jpg", viz.Id);
        Assert.False(viz.Answerable);

        File.WriteAllText(dir.File("coco.json"), "{\"images\":[{\"id\":391895},{\"id\":7}],\"annotations\":[{\"image_id\":391895,\"id\":1,\"caption\":\"A man with a red helmet.\"},{\"image_id\":7,\"id\":2,\"caption\":\"x\"},{\"image_id\":391895,\"id\":3,\"caption\":\"A moped.\"}]}");
        var coco = CaptionReader.Read(dir.File("coco.json"));
        Assert.Equal(new[] { "391895", "7" }, coco.Select(c => c.ImageId));
        Assert.Equal(2, coco[0].References.Count);

        File.WriteAllText(dir.File("dataset_flickr30k.json"), "{\"dataset\":\"flickr30k\",\"images\":[{\"filename\":\"1007129816.jpg\",\"imgid\":0,\"split\":\"test\",\"sentences\":[{\"raw\":\"A man.\",\"tokens\":[\"a\",\"man\"]}]},{\"filename\":\"2.jpg\",\"imgid\":1,\"split\":\"train\",\"sentences\":[{\"raw\":\"b\"}]}]}");
        var flickr = CaptionReader.Read(dir.File("dataset_flickr30k.json"), "test").Single();
        Assert.Equal("1007129816", flickr.ImageId);
        Assert.Equal("A man.", flickr.References.Single()); // raw, never the Karpathy tokens
        Assert.Contains("needs --split", Assert.Throws<BadInputException>(() => CaptionReader.Read(dir.File("dataset_flickr30k.json"))).Message);
    }
}
