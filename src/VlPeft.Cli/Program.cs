VlPeft.Runtime.NativeAllocator.KeepFreedBlocksForReuse(); // long training steps reuse activation blocks
return VlPeft.Cli.CliApp.Run(args, Console.Out, Console.Error);
