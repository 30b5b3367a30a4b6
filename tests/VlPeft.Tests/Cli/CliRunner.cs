using VlPeft.Cli;

namespace VlPeft.Tests.Cli;

/// <summary>Runs the vlpeft command tree in-process and captures what it prints.</summary>
static class CliRunner
{
    public static (int ExitCode, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = CliApp.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
