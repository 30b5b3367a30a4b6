namespace VlPeft.Tests;

/// <summary>
/// A test too slow or disk-hungry for the default run. It runs when VLPEFT_SLOW_TESTS=1, which
/// <c>.ci/run</c> sets for its second pass: <c>VLPEFT_SLOW_TESTS=1 dotnet test --filter Category=Slow</c>.
/// Mark such tests also with <c>[Trait("Category", "Slow")]</c>.
/// </summary>
public sealed class SlowFactAttribute : FactAttribute
{
    public SlowFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("VLPEFT_SLOW_TESTS") != "1")
            Skip = "slow test: set VLPEFT_SLOW_TESTS=1 (run by .ci/run with --filter Category=Slow)";
    }
}
