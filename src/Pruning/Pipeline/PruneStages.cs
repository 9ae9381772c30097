using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using E3.Interop.IO;

namespace E3.Pruning.Pipeline;

/// <summary>
/// The pipeline's checkpoint at the grain of stages: a stage's JSON result is stored in <c>stages/NAME.json</c> once it
/// succeeds, and a resumed run keeps every stage whose result is there. A stage that checkpoints inside itself (the
/// search, drop-one-kl, the distillations) resumes from its own checkpoint.
/// </summary>
internal sealed class PruneStages(string outputFolder, bool resume, Action<PruneProgress> progress, CancellationToken cancel)
{
    readonly string _stages = Path.Combine(outputFolder, "stages");

    /// <summary>
    /// Records what decides the run's results (<paramref name="identity"/>, keyed by option) in a new run; in a resumed
    /// one, refuses an option whose value differs from the one the run started with. An option the stored record lacks
    /// (it came after the run started) counts as having had its value in <paramref name="defaults"/>.
    /// </summary>
    public void RequireSameRun(JsonObject identity, JsonObject defaults)
    {
        string file = Path.Combine(_stages, "request.json");
        if (resume && File.Exists(file) && JsonNode.Parse(File.ReadAllText(file)) is JsonObject started)
        {
            foreach (var (option, value) in identity)
                if ((started[option] ?? defaults[option]) is { } was && was.ToJsonString() != value?.ToJsonString())
                    throw new ArgumentException($"--{option}: {value?.ToJsonString()} differs from {was.ToJsonString()}, which the run in {outputFolder} " +
                        "was started with; resume it with the same value, or start a new run in another folder");
        }
        Directory.CreateDirectory(_stages);
        AtomicFile.WriteAllText(file, E3.Pruning.Reports.ResultJson.Format(identity));
    }

    /// <summary>
    /// The stored result of <paramref name="name"/>, or else runs <paramref name="stage"/> and stores its result. A
    /// failure is a <see cref="PruneStageException"/> naming the stage; cancellation is not wrapped.
    /// </summary>
    /// <param name="describe">What the stage runs, for its Started report.</param>
    /// <param name="outputStays">Whether the stage's output is still there, for a stage whose output later stages read
    /// (a finished stage whose output has gone is run again).</param>
    public JsonObject Run(string name, string describe, Func<JsonObject> stage, Func<bool>? outputStays = null)
    {
        cancel.ThrowIfCancellationRequested();
        string file = Path.Combine(_stages, name + ".json");
        if (resume && File.Exists(file) && (outputStays?.Invoke() ?? true) && JsonNode.Parse(File.ReadAllText(file)) is JsonObject previous)
        {
            progress(new PruneProgress(name, PruneEvent.Kept, "done earlier, kept"));
            return previous;
        }
        var clock = Stopwatch.StartNew();
        JsonObject result;
        try
        {
            progress(new PruneProgress(name, PruneEvent.Started, describe));
            result = stage();
            // Inside: a result that cannot be stored (a NaN, a full disk) fails this stage, by name.
            Directory.CreateDirectory(_stages);
            AtomicFile.WriteAllText(file, E3.Pruning.Reports.ResultJson.Format(result));
        }
        catch (Exception e) when (e is not (OutOfMemoryException or OperationCanceledException))
        {
            throw new PruneStageException(name, e);
        }
        progress(new PruneProgress(name, PruneEvent.Finished, string.Create(CultureInfo.InvariantCulture, $"done in {clock.Elapsed.TotalSeconds:F1} s")));
        return result;
    }
}
