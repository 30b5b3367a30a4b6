using VlPeft.Distributed;

namespace VlPeft.Cli;

/// <summary>
/// One rank of <c>mpirun -np N vlpeft train|eval …</c>: rank 0 speaks (stdout, progress lines); the other ranks keep quiet
/// unless they fail. A rank that fails prints its error with its rank and ends the whole job (MPI_Abort), since the
/// others would wait for it forever; checkpoints are written atomically, so the last one stays intact.
/// </summary>
static class DistributedCli
{
    static readonly string[] Commands = { "train", "eval" };

    public static int Run(Cluster cluster, string[] args)
    {
        string prefix = $"rank {cluster.Rank} of {cluster.Size}: ";
        if (args.Length == 0 || !Commands.Contains(args[0]))
        {
            if (cluster.IsRoot)
                Console.Error.WriteLine($"error: under mpirun vlpeft runs {string.Join(" and ", Commands)} (data parallel); '{(args.Length > 0 ? args[0] : "")}' runs as one process, without mpirun");
            cluster.Finish();
            return CliApp.BadInput;
        }
        var error = new StringWriter();
        if (!cluster.IsRoot)
        {
            VlPeft.Log.Info = _ => { };
            VlPeft.Log.Warning = _ => { };
        }
        int code = CliApp.Run(args, cluster.IsRoot ? Console.Out : TextWriter.Null, error);
        // Rank 0's messages as they are; another rank's only when it failed (then they say which rank).
        string errors = error.ToString();
        if (errors.Length > 0 && (cluster.IsRoot || code != CliApp.Success))
            foreach (var line in errors.TrimEnd('\n').Split('\n'))
                Console.Error.WriteLine(cluster.IsRoot && code == CliApp.Success ? line : prefix + line);
        if (code != CliApp.Success)
        {
            Console.Error.Flush();
            cluster.Abort(code);
        }
        cluster.Finish();
        return code;
    }
}
