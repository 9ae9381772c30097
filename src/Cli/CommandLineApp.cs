using System.CommandLine;

namespace E3.Cli;

/// <summary>Builds the <c>e3</c> command tree.</summary>
public static class CommandLineApp
{
    public static int Run(string[] args)
    {
        var root = new RootCommand("E3: prune whole decoder layers out of LLMs and run the result faster.");
        return root.Parse(args).Invoke();
    }
}
