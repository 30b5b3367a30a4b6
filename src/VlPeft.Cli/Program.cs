using VlPeft.Cli;
using VlPeft.Distributed;

VlPeft.Runtime.NativeAllocator.KeepFreedBlocksForReuse(); // long training steps reuse activation blocks
Cluster cluster;
try
{
    cluster = Cluster.StartFromEnvironment();   // under mpirun: join the job; otherwise one process
}
catch (VlPeft.BadInputException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return CliApp.BadInput;
}
if (!cluster.IsDistributed) return CliApp.Run(args, Console.Out, Console.Error);
return DistributedCli.Run(cluster, args);
