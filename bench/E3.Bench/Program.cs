using BenchmarkDotNet.Running;

namespace E3.Bench;

public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == PairedTrainingRun.Verb) return PairedTrainingRun.Run(args);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
