using System.CommandLine;
using VlPeft.Cli.Commands;

namespace VlPeft.Cli;

/// <summary>
/// The <c>vlpeft</c> command tree. Exit codes: 0 success, 2 bad input or usage (one line
/// <c>error: what (file)</c>, no stack trace), 1 internal failure.
/// </summary>
public static class CliApp
{
    public const int Success = 0;
    public const int InternalFailure = 1;
    public const int BadInput = 2;
    /// <summary>Training diverged (NaN/Inf loss): a result, with the run directory left resumable.</summary>
    public const int Diverged = 3;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var console = new CliConsole(output, error);
        var root = new RootCommand("VlPeft: parameter-efficient fine-tuning of vision-language models.")
        {
            InspectCommand.Create(console),
            DoctorCommand.Create(console),
            ParamsCommand.Create(console),
            ForwardCommand.Create(console),
            ScoreCommand.Create(console),
            DataCommand.Create(console),
            TrainCommand.Create(console),
            AnalyzeCommand.Create(console),
            MergeCommand.Create(console),
            EvalCommand.Create(console),
            PredictCommand.Create(console),
            DemoCommand.Create(console),
            ConvertCommand.Create(console),
        };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            error.WriteLine($"error: {parsed.Errors[0].Message}");
            return BadInput;
        }
        return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
    }

    /// <summary>Runs a command body, turning exceptions into the CLI's exit codes.</summary>
    public static int Guard(CliConsole console, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (VlPeft.Training.TrainingDivergedException e)
        {
            // A result, not a crash: the run directory stays resumable from its last good checkpoint.
            console.Error.WriteLine($"error: training diverged: {e.Message}");
            return Diverged;
        }
        catch (BadInputException e)
        {
            console.Error.WriteLine(e.File == null ? $"error: {e.Message}" : $"error: {e.Message} ({e.File})");
            return BadInput;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A path the user gave cannot be read or written (missing folder, no permission, disk full).
            console.Error.WriteLine($"error: {e.Message}");
            return BadInput;
        }
        catch (Exception e)
        {
            console.Error.WriteLine($"internal error: {e.Message}");
            console.Error.WriteLine(e);
            return InternalFailure;
        }
    }
}

/// <summary>Where commands write; tests pass string writers.</summary>
public sealed record CliConsole(TextWriter Out, TextWriter Error);
