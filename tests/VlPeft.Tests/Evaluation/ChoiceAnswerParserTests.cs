using VlPeft.Evaluation;

namespace VlPeft.Tests.Evaluation;

public class ChoiceAnswerParserTests
{
    static readonly string[] Choices = { "red", "dark red", "blue" };

    [Theory]
    [InlineData("(b) dark red", 1)]      // the letter wins
    [InlineData("(C) whatever", 2)]
    [InlineData("(d) nothing", -1)]      // no fourth choice
    [InlineData("Blue", 2)]              // exact text, any case
    [InlineData("it is dark red.", 1)]   // longest contained choice
    [InlineData("green", -1)]
    public void Generated_text_maps_to_a_choice(string generated, int expected) =>
        Assert.Equal(expected, ChoiceAnswerParser.Parse(generated, Choices));
}
