using System.CommandLine;
using E3.Cli.Commands;

namespace E3.Cli;

/// <summary>Builds the <c>e3</c> command tree. Exit codes: 0 success, 1 bad input or failure, 2 usage error, 130 interrupted.</summary>
public static class CommandLineApp
{
    public static RootCommand Build()
    {
        var root = new RootCommand("E3: prune whole decoder layers out of LLMs (Qwen3, Llama, Qwen2) and run the result faster.");
        root.Subcommands.Add(DoctorCommand.Create());
        root.Subcommands.Add(ModelCommands.Create());
        root.Subcommands.Add(ForwardCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(BenchCommands.Create());
        root.Subcommands.Add(KernelCommands.Create());
        root.Subcommands.Add(PlanCommand.Create());
        root.Subcommands.Add(TeacherCacheCommand.Create());
        root.Subcommands.Add(SearchCommand.Create());
        root.Subcommands.Add(BaselineCommand.Create());
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(CompareCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(DistillCommand.Create());
        root.Subcommands.Add(Commands.Prune.PruneCommand.Create());
        return root;
    }

    public static int Run(string[] args)
    {
        var parse = Build().Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) Console.Error.WriteLine($"e3: {e.Message}");
            Console.Error.WriteLine("Run 'e3 --help' for usage.");
            return ExitCodes.Usage;
        }
        return parse.Invoke();
    }
}

public static class ExitCodes
{
    public const int Ok = 0;
    public const int Failure = 1;
    public const int Usage = 2;

    /// <summary>A long job stopped by Ctrl+C or SIGTERM, after saving its checkpoint (128 + SIGINT, as shells report it).</summary>
    public const int Interrupted = 130;
}
