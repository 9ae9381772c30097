using System.Diagnostics;
using Spectre.Console;

namespace E3.Cli.Commands;

/// <summary>
/// Progress of a long command on stderr: a Spectre.Console bar on a terminal; on a pipe or log, plain lines at most
/// once a second and at the end (no cursor control codes). Stdout stays free for the result.
/// </summary>
internal static class ConsoleProgress
{
    /// <summary>
    /// Runs <paramref name="body"/>, handing it a report(steps done, steps in all, amount done) callback; the amount
    /// (tokens, MB, …, named by <paramref name="unit"/>) gives the rate, the steps the ETA.
    /// </summary>
    public static T Run<T>(string label, string unit, Func<Action<long, long, double>, T> body)
    {
        var clock = Stopwatch.StartNew();
        string Describe(long done, long total, double amount)
        {
            double seconds = clock.Elapsed.TotalSeconds;
            double eta = done == 0 ? 0 : seconds / done * (total - done);
            return $"{label}: {done}/{total}, {amount / Math.Max(1e-9, seconds):F0} {unit}/s, ETA {eta:F0} s";
        }
        if (Console.IsErrorRedirected)
        {
            var lastLine = TimeSpan.FromSeconds(-1);
            return body((done, total, amount) =>
            {
                if (done < total && clock.Elapsed - lastLine < TimeSpan.FromSeconds(1)) return;
                lastLine = clock.Elapsed;
                Console.Error.WriteLine(Describe(done, total, amount));
            });
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        T result = default!;
        // Progress.Start runs the body on this thread (its exclusivity lock is uncontended and the body completes
        // synchronously); only the refresh runs elsewhere. The cuda device depends on that: its context is current on
        // the thread that opened it, and kernel launches do not make it current again.
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask(label, maxValue: 1);
                result = body((done, total, amount) =>
                {
                    task.MaxValue = Math.Max(1, total);
                    task.Value = done;
                    task.Description = Describe(done, total, amount);
                });
            });
        return result;
    }
}
