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
internal sealed class PruneStages(string outputFolder, bool resume, Action<PruneProgress> progress)
{
    readonly string _stages = Path.Combine(outputFolder, "stages");

    /// <summary>
    /// The stored result of <paramref name="name"/>, or else runs <paramref name="stage"/> and stores its result. A
    /// failure is a <see cref="PruneStageException"/> naming the stage.
    /// </summary>
    /// <param name="describe">What the stage runs, for its Started report.</param>
    public JsonObject Run(string name, string describe, Func<JsonObject> stage)
    {
        string file = Path.Combine(_stages, name + ".json");
        if (resume && File.Exists(file) && JsonNode.Parse(File.ReadAllText(file)) is JsonObject previous)
        {
            progress(new PruneProgress(name, PruneEvent.Kept, "done earlier, kept"));
            return previous;
        }
        progress(new PruneProgress(name, PruneEvent.Started, describe));
        var clock = Stopwatch.StartNew();
        JsonObject result;
        try
        {
            result = stage();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new PruneStageException(name, e);
        }
        Directory.CreateDirectory(_stages);
        AtomicFile.WriteAllText(file, E3.Pruning.Reports.ResultJson.Format(result));
        progress(new PruneProgress(name, PruneEvent.Finished, string.Create(CultureInfo.InvariantCulture, $"done in {clock.Elapsed.TotalSeconds:F1} s")));
        return result;
    }
}
