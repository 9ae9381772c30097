using System.Diagnostics;
using E3.Pruning.Pipeline;
using Spectre.Console;

namespace E3.Cli.Commands.Prune;

/// <summary>
/// <c>e3 prune</c>'s progress on stderr: on a terminal, a Spectre.Console bar per stage, with warnings held until the
/// display ends (its redraws would garble them); on a pipe or log, a line per stage event and at most one progress line
/// a second. Stdout stays free for the report.
/// </summary>
internal static class PruneConsole
{
    public static PruneOutcome Run(Func<Action<PruneProgress>, PruneOutcome> run)
    {
        if (Console.IsErrorRedirected)
        {
            var clock = Stopwatch.StartNew();
            var last = TimeSpan.FromSeconds(-1);
            return run(p =>
            {
                if (p.Event == PruneEvent.Advanced)
                {
                    if (p.Done < p.Total && clock.Elapsed - last < TimeSpan.FromSeconds(1)) return;
                    last = clock.Elapsed;
                }
                Console.Error.WriteLine(Line(p));
            });
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        var warnings = new List<string>();
        PruneOutcome? outcome = null;
        try
        {
            // Progress.Start runs the body on this thread; the cuda device needs that (its context is current here).
            console.Progress()
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(context =>
                {
                    var tasks = new Dictionary<string, ProgressTask>();
                    ProgressTask Task(string stage) => tasks.TryGetValue(stage, out var t) ? t : tasks[stage] = context.AddTask(Markup.Escape(stage), maxValue: 1);
                    outcome = run(p =>
                    {
                        var task = Task(p.Stage);
                        switch (p.Event)
                        {
                            case PruneEvent.Warning:
                                warnings.Add(Line(p));
                                return;
                            case PruneEvent.Advanced when p.Total > 0:
                                task.MaxValue = p.Total;
                                task.Value = p.Done;
                                break;
                            case PruneEvent.Finished or PruneEvent.Kept:
                                task.Value = task.MaxValue;
                                break;
                        }
                        task.Description = Markup.Escape(Line(p));
                    });
                });
        }
        finally
        {
            foreach (var w in warnings) Console.Error.WriteLine(w);
        }
        return outcome!;
    }

    static string Line(PruneProgress p) => p.Event == PruneEvent.Warning ? $"[prune] {p.Stage}: warning: {p.Message}" : $"[prune] {p.Stage}: {p.Message}";
}
