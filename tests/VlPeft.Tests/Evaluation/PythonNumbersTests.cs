using VlPeft.Evaluation.Metrics;

namespace VlPeft.Tests.Evaluation;

public class PythonNumbersTests
{
    [Theory]
    [InlineData(12.125, "12.12")]   // exact binary tie → even (Python), where .NET "F2" gives 12.13
    [InlineData(12.375, "12.38")]   // tie → even
    [InlineData(2.675, "2.67")]     // 2.675 is stored as 2.67499999…
    [InlineData(1.005, "1.00")]
    [InlineData(66.66666666666667, "66.67")]
    [InlineData(50.0, "50.00")]
    [InlineData(0.0, "0.00")]
    [InlineData(-0.004, "-0.00")]
    [InlineData(100.0, "100.00")]
    public void Fixed_matches_python_format(double value, string expected) => Assert.Equal(expected, PythonNumbers.Fixed(value));

    [Fact]
    public void Round_matches_python_round() => Assert.Equal(12.12, PythonNumbers.Round(12.125));
}
