return VlPeft.Cli.CliApp.Run(args, Console.Out, Console.Error);
