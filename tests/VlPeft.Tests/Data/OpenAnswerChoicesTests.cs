using VlPeft.Data.Synthetic;

namespace VlPeft.Tests.Data;

public class OpenAnswerChoicesTests
{
    [Theory]
    [InlineData("3", 3)]
    [InlineData("yes", 2)]
    [InlineData("no", 2)]
    [InlineData("a red circle", 3)]
    public void Options_hold_the_answer_once_among_distractors_of_its_kind(string answer, int count)
    {
        var random = new Random(5);
        for (int i = 0; i < 50; i++)
        {
            var (choices, index) = OpenAnswerChoices.For(answer, random)!.Value;
            Assert.Equal(count, choices.Count);
            Assert.Equal(answer, choices[index]);
            Assert.Single(choices, c => c == answer);
            Assert.Equal(count, choices.Distinct().Count());
            if (int.TryParse(answer, out int n))   // three consecutive counts around the answer
                Assert.Equal(2, choices.Select(int.Parse).Max() - choices.Select(int.Parse).Min());
            if (answer.StartsWith("a "))
                Assert.All(choices, c => Assert.Matches("^a (red|green|blue|yellow|purple) (circle|square|triangle)$", c));
        }
    }

    [Theory]
    [InlineData("red")]
    [InlineData("triangle")]
    [InlineData("a large red circle")]
    public void Single_colour_or_shape_words_and_other_answers_stay_open(string answer) =>
        Assert.Null(OpenAnswerChoices.For(answer, new Random(1)));

    [Fact]
    public void The_correct_option_lands_at_every_position_about_equally()
    {
        var random = new Random(7);
        var positions = Enumerable.Range(0, 3000).Select(_ => OpenAnswerChoices.For("a blue square", random)!.Value.Answer).ToList();
        foreach (int p in new[] { 0, 1, 2 })
            Assert.InRange(positions.Count(x => x == p), 900, 1100);
    }
}
