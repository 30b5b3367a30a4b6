using System.Text.Json;
using VlPeft.Data;
using VlPeft.Data.ScienceQa;
using VlPeft.Text;

namespace VlPeft.Tests.Text;

public class PromptTests
{
    static readonly ChoiceRecord Sample = new()
    {
        Id = "9", Question = "Which word is a noun?", Choices = new[] { "run", "dog!", "quickly" }, Answer = 1,
        Hint = "Look at the  words.", Lecture = "A noun names a person;\nplace or thing.", Solution = "Dog is a noun.\nRun is a verb.",
        HasImage = false,
    };

    [Fact]
    public void Instructblip_peft_scienceqa_prompt_is_built_character_for_character()
    {
        var p = InstructBlipPeftPrompts.ScienceQa(Sample);
        // Braces literal, choices each end with \n, ! * # ; removed everywhere (the ';' in the lecture too).
        Assert.Equal("Context: {Look at the  words. A noun names a person\nplace or thing.} Question: {Which word is a noun?} Options: {(a) run\n(b) dog\n(c) quickly\n} Answer:", p.Instruction);
        Assert.Equal("(b) dog!", p.Target);
        Assert.Equal(new[] { "(a) run", "(b) dog!", "(c) quickly" }, p.Candidates);
        var noHint = InstructBlipPeftPrompts.ScienceQa(Sample with { Hint = "", Lecture = "" });
        Assert.StartsWith("Context: { } Question:", noHint.Instruction); // hint + " " + lecture keeps the space
    }

    [Fact]
    public void Instructblip_peft_iconqa_and_other_prompts()
    {
        var r = new ChoiceRecord { Id = "1", Question = "How likely is it that you will pick a black one?", Choices = new[] { "certain", "unlikely", "impossible" }, Answer = 2 };
        var p = InstructBlipPeftPrompts.IconQa(r);
        Assert.Equal("<Image> Question: How likely is it that you will pick a black one? Options: (a) certain (b) unlikely (c) impossible. Short answer:", p.Instruction);
        Assert.Equal("(c) impossible", p.Target);
        Assert.Equal("<Image> Question: What is this? Short answer:", InstructBlipPeftPrompts.VizWiz("What is this?"));
        Assert.Equal("<Image> A short image description:", InstructBlipPeftPrompts.Flickr30k);
        Assert.Equal("a b", InstructBlipPeftPrompts.ProcessQuestion("a b c", maxWords: 2));
        Assert.Equal("Hi there", InstructBlipPeftPrompts.ProcessQuestion("Hi# there!  "));
    }

    [Fact]
    public void Lavin_qcm_ale_escapes_explanations_and_collapses_double_spaces_once()
    {
        var (prompt, target) = ScienceQaPrompts.LavinQcmAle(Sample);
        Assert.Equal("Question: Which word is a noun?\nContext: Look at the words.\nOptions: (A) run (B) dog! (C) quickly\nResponse:", prompt);
        Assert.Equal("The answer is B. BECAUSE: A noun names a person;\\nplace or thing. Dog is a noun.\\nRun is a verb.", target);
        var (bare, plain) = ScienceQaPrompts.LavinQcmAle(Sample with { Hint = "", Lecture = "", Solution = "" });
        Assert.Contains("\nContext: N/A\n", bare);
        Assert.Equal("The answer is B.", plain);
    }

    [Fact]
    public void Llava_prompts_equal_llavas_own_file_for_every_sample_record()
    {
        var records = ScienceQaReader.Read(SharedData.Path("scienceqa", "problems_sample.json"), split: null).Records.ToDictionary(r => r.Id);
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Path("scienceqa", "llava_test_CQM-A.json")));
        int compared = 0;
        foreach (var item in doc.RootElement.EnumerateArray())
        {
            if (!records.TryGetValue(item.GetProperty("id").GetString()!, out var record)) continue;
            var (prompt, answer) = ScienceQaPrompts.LlavaCqmA(record);
            Assert.Equal(item.GetProperty("conversations")[0].GetProperty("value").GetString(), prompt);
            Assert.Equal(item.GetProperty("conversations")[1].GetProperty("value").GetString(), answer);
            compared++;
        }
        Assert.Equal(357, compared);
    }
}
