using System.Text.Json;
using System.Text.Json.Nodes;
using VlPeft.Tests.Data;

namespace VlPeft.Tests.Cli;

public class ScoreCommandTests
{
    [Fact]
    public void Scienceqa_json_has_the_official_keys_and_accepts_letters_indices_and_text()
    {
        using var dir = new TempDirectory();
        ReaderTests.ScienceQaFixture(dir);
        var problems = JsonNode.Parse(File.ReadAllText(dir.File("problems.json")))!.AsObject();
        var splits = JsonNode.Parse(File.ReadAllText(dir.File("pid_splits.json")))!["test"]!.AsArray().Select(p => p!.GetValue<string>()).ToList();
        var predictions = new JsonObject();
        int i = 0, correct = 0;
        foreach (var pid in splits)
        {
            int answer = problems[pid]!["answer"]!.GetValue<int>();
            // Cycle through the accepted forms; every fourth prediction is wrong.
            bool right = i % 4 != 3;
            int predicted = right ? answer : (answer + 1) % problems[pid]!["choices"]!.AsArray().Count;
            predictions[pid] = (i % 3) switch { 0 => predicted, 1 => "ABCDE"[predicted].ToString(), _ => $"The answer is {"ABCDE"[predicted]}. BECAUSE: …" };
            correct += right ? 1 : 0;
            i++;
        }
        File.WriteAllText(dir.File("pred.json"), new JsonObject { ["results"] = predictions }.ToJsonString());
        var (code, output, error) = CliRunner.Run("score", "scienceqa", "--data", dir.Path, "--predictions", dir.File("pred.json"), "--json");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var metrics = doc.RootElement.GetProperty("metrics");
        foreach (var key in new[] { "acc_natural", "acc_social", "acc_language", "acc_has_text", "acc_has_image", "acc_no_context", "acc_grade_1_6", "acc_grade_7_12", "acc_average", "acc_biology" })
            Assert.True(metrics.TryGetProperty(key, out _), key);
        Assert.Equal((100.0 * correct / splits.Count).ToString("F2"), metrics.GetProperty("acc_average").GetString());
        Assert.Equal(splits.Count, doc.RootElement.GetProperty("counts").GetProperty("acc_average").GetInt32());

        var text = CliRunner.Run("score", "scienceqa", "--data", dir.Path, "--predictions", dir.File("pred.json"));
        Assert.StartsWith("NAT", text.Out);
        Assert.Contains("G7-12  Avg", text.Out);
    }

    [Fact]
    public void Unknown_and_missing_ids_are_errors_unless_allowed()
    {
        using var dir = new TempDirectory();
        ReaderTests.ScienceQaFixture(dir);
        File.WriteAllText(dir.File("unknown.json"), "{\"999999\": 0}");
        var unknown = CliRunner.Run("score", "scienceqa", "--data", dir.Path, "--predictions", dir.File("unknown.json"));
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("unknown id '999999'", unknown.Err);
        File.WriteAllText(dir.File("partial.json"), "{\"23\": 1}");
        var missing = CliRunner.Run("score", "scienceqa", "--data", dir.Path, "--predictions", dir.File("partial.json"));
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("have no prediction", missing.Err);
        var allowed = CliRunner.Run("score", "scienceqa", "--data", dir.Path, "--predictions", dir.File("partial.json"), "--allow-missing", "--json");
        Assert.Equal(0, allowed.ExitCode);
        Assert.Contains("356 problem(s) without a prediction counted as wrong", allowed.Err);
        using var doc = JsonDocument.Parse(allowed.Out);
        Assert.Equal((100.0 / 357).ToString("F2"), doc.RootElement.GetProperty("metrics").GetProperty("acc_average").GetString());
        File.WriteAllText(dir.File("list.json"), "[1, 2]");
        Assert.Contains("must be a JSON object", CliRunner.Run("score", "scienceqa", "--data", dir.Path, "--predictions", dir.File("list.json")).Err);
    }

    [Fact]
    public void Vqa_vizwiz_iconqa_and_captions_score_end_to_end()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("v2_OpenEnded_mscoco_val2014_questions.json"), "{\"questions\":[{\"image_id\":1,\"question\":\"How many?\",\"question_id\":1001},{\"image_id\":1,\"question\":\"Color?\",\"question_id\":1002}]}");
        string Answers(params string[] a) => "[" + string.Join(",", a.Select((x, i) => $"{{\"answer\":\"{x}\",\"answer_id\":{i + 1}}}")) + "]";
        File.WriteAllText(dir.File("v2_mscoco_val2014_annotations.json"), "{\"annotations\":["
            + $"{{\"question_id\":1001,\"question_type\":\"how many\",\"answer_type\":\"number\",\"answers\":{Answers(Enumerable.Repeat("2", 2).Concat(Enumerable.Repeat("3", 8)).ToArray())}}},"
            + $"{{\"question_id\":1002,\"question_type\":\"what color\",\"answer_type\":\"other\",\"answers\":{Answers(Enumerable.Repeat("red", 10).ToArray())}}}]}}");
        File.WriteAllText(dir.File("vqa_pred.json"), "[{\"question_id\":1001,\"answer\":\"two\"},{\"question_id\":1002,\"answer\":\"red\"}]");
        var vqa = CliRunner.Run("score", "vqav2", "--data", dir.Path, "--predictions", dir.File("vqa_pred.json"), "--json");
        Assert.True(vqa.ExitCode == 0, vqa.Err);
        Assert.Equal(80.0, JsonDocument.Parse(vqa.Out).RootElement.GetProperty("metrics").GetProperty("overall").GetDouble()); // (0.6 + 1) / 2
        // --questions and --annotations replace --data, as the help says.
        var files = CliRunner.Run("score", "vqav2", "--questions", dir.File("v2_OpenEnded_mscoco_val2014_questions.json"),
            "--annotations", dir.File("v2_mscoco_val2014_annotations.json"), "--predictions", dir.File("vqa_pred.json"), "--json");
        Assert.True(files.ExitCode == 0, files.Err);
        Assert.Equal(80.0, JsonDocument.Parse(files.Out).RootElement.GetProperty("metrics").GetProperty("overall").GetDouble());
        var neither = CliRunner.Run("score", "vqav2", "--predictions", dir.File("vqa_pred.json"));
        Assert.Equal(2, neither.ExitCode);
        Assert.Contains("give --data, or both --questions and --annotations", neither.Err);

        File.WriteAllText(dir.File("val.json"), "[{\"image\":\"a.jpg\",\"question\":\"?\",\"answers\":" + Answers(Enumerable.Repeat("unanswerable", 10).ToArray()) + ",\"answer_type\":\"unanswerable\"}]");
        File.WriteAllText(dir.File("viz_pred.json"), "[{\"image\":\"a.jpg\",\"answer\":\"Unanswerable.\"}]");
        var viz = CliRunner.Run("score", "vizwiz", "--data", dir.File("val.json"), "--predictions", dir.File("viz_pred.json"), "--json");
        Assert.Equal(100.0, JsonDocument.Parse(viz.Out).RootElement.GetProperty("metrics").GetProperty("overall").GetDouble());

        Directory.CreateDirectory(dir.File("iconqa/test/choose_txt/3"));
        File.WriteAllText(dir.File("iconqa/test/choose_txt/3/data.json"), "{\"question\":\"?\",\"choices\":[\"one\",\"two\"],\"answer\":1,\"ques_type\":\"choose_txt\"}");
        Directory.CreateDirectory(dir.File("iconqa/test/choose_txt/4"));
        File.WriteAllText(dir.File("iconqa/test/choose_txt/4/data.json"), "{\"question\":\"?\",\"choices\":[\"one\",\"two\"],\"answer\":0,\"ques_type\":\"choose_txt\"}");
        File.WriteAllText(dir.File("icon_pred.json"), "{\"3\": \"(b) two\", \"4\": 1}");
        var icon = CliRunner.Run("score", "iconqa", "--data", dir.File("iconqa"), "--predictions", dir.File("icon_pred.json"), "--json");
        Assert.Equal("50.00", JsonDocument.Parse(icon.Out).RootElement.GetProperty("metrics").GetProperty("accuracy").GetString());

        File.WriteAllText(dir.File("coco.json"), "{\"images\":[{\"id\":1},{\"id\":2}],\"annotations\":[{\"image_id\":1,\"id\":1,\"caption\":\"A b c d.\"},{\"image_id\":2,\"id\":2,\"caption\":\"F g h i j\"}]}");
        File.WriteAllText(dir.File("cap_pred.json"), "[{\"image_id\":1,\"caption\":\"a b c d\"},{\"image_id\":2,\"caption\":\"f g h i j\"}]");
        var cap = CliRunner.Run("score", "coco", "--data", dir.File("coco.json"), "--predictions", dir.File("cap_pred.json"), "--json");
        Assert.True(cap.ExitCode == 0, cap.Err);
        var m = JsonDocument.Parse(cap.Out).RootElement.GetProperty("metrics");
        Assert.Equal(10.0, m.GetProperty("CIDEr").GetDouble(), 9);       // identical captions, disjoint vocabularies
        Assert.Equal(1.0, m.GetProperty("ROUGE_L").GetDouble(), 12);
        Assert.Contains("METEOR skipped", cap.Err);
    }
}
