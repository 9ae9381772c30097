using System.Diagnostics;
using Spectre.Console;

namespace E3.Cli.Commands;

/// <summary>
/// Progress of an evaluation over windows, on stderr: a Spectre.Console bar on a terminal, one plain line per window
/// otherwise (logs and pipes get no cursor control codes). Stdout stays free for the result.
/// </summary>
internal static class EvaluationProgress
{
    /// <summary>Runs <paramref name="body"/>, handing it a (windows done, windows in all, tokens done) callback.</summary>
    public static T Run<T>(string label, Func<Action<int, int, long>, T> body)
    {
        var clock = Stopwatch.StartNew();
        string Describe(int done, int total, long tokens)
        {
            double seconds = clock.Elapsed.TotalSeconds;
            double rate = tokens / Math.Max(1e-9, seconds);
            double eta = done == 0 ? 0 : seconds / done * (total - done);
            return $"{label}: window {done}/{total}, {rate:F0} tokens/s, ETA {eta:F0} s";
        }
        if (Console.IsErrorRedirected)
            return body((done, total, tokens) => Console.Error.WriteLine(Describe(done, total, tokens)));
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        T result = default!;
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask(label, maxValue: 1);
                result = body((done, total, tokens) =>
                {
                    task.MaxValue = Math.Max(1, total);
                    task.Value = done;
                    task.Description = Describe(done, total, tokens);
                });
            });
        return result;
    }
}
