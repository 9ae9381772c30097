using System.Runtime.InteropServices;

namespace E3.Cli.Commands;

/// <summary>
/// Ctrl+C (SIGINT) or SIGTERM as a cancellation for a long job (search, train, distill, prune): the first signal asks
/// it to stop at its next step, where it saves a checkpoint of the steps done since its last one, so that
/// <c>--resume</c> loses nothing; a second Ctrl+C ends the process at once, as without this.
/// </summary>
internal sealed class Interruption : IDisposable
{
    readonly CancellationTokenSource _stop = new();
    readonly PosixSignalRegistration _interrupt;
    readonly PosixSignalRegistration _terminate;

    Interruption()
    {
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    }

    /// <summary>Runs <paramref name="job"/> with a token that the first SIGINT or SIGTERM cancels.</summary>
    public static int Run(Func<CancellationToken, int> job)
    {
        using var interruption = new Interruption();
        return job(interruption._stop.Token);
    }

    // Runs on a thread of its own, possibly while Dispose runs: the token source is therefore never disposed (it holds
    // no timer, so there is nothing to release). On a terminal the live progress display owns stderr; the job's exit
    // message says what happened once the display has ended.
    void OnSignal(PosixSignalContext context)
    {
        if (_stop.IsCancellationRequested) return; // the second: the default, which ends the process
        context.Cancel = true;
        if (Console.IsErrorRedirected)
            Console.Error.WriteLine($"e3: {context.Signal}: stopping after the current step and saving a checkpoint (Ctrl+C again stops at once)");
        _stop.Cancel();
    }

    public void Dispose()
    {
        _interrupt.Dispose();
        _terminate.Dispose();
    }
}
