using E3.Interop.IO;
using E3.Model.IO;
using System.Text.Json.Nodes;

namespace E3.Cli.Commands.Prune;

/// <summary>
/// Runs the pipeline's stages as the e3 commands themselves, in this process, so that each stage keeps its own
/// validation, checkpointing and atomic outputs. A stage's JSON result is stored in <c>stages/NAME.json</c> once it
/// succeeds; a resumed pipeline skips every stage whose result is already there.
/// </summary>
internal sealed class StageRunner(string outputFolder, bool resume, Action<string> log)
{
    readonly string _stages = Path.Combine(outputFolder, "stages");

    /// <summary>The stored JSON result of a stage that has finished, or null.</summary>
    public JsonObject? Done(string name)
    {
        string file = ResultFile(name);
        return resume && File.Exists(file) ? JsonNode.Parse(File.ReadAllText(file)) as JsonObject : null;
    }

    /// <summary>
    /// Runs <c>e3 ARGS --json</c> unless the stage already finished; throws, naming the stage and its exit code, when
    /// it fails (the command has already printed its one-line error).
    /// </summary>
    public JsonObject Run(string name, params string[] args)
    {
        if (Done(name) is { } previous)
        {
            log($"{name}: done earlier, kept");
            return previous;
        }
        log($"{name}: e3 {string.Join(' ', args.Select(Quote))}");
        var stdout = Console.Out;
        var captured = new StringWriter();
        int exit;
        Console.SetOut(captured);
        try
        {
            exit = CommandLineApp.Build().Parse([.. args, "--json"]).Invoke();
        }
        finally
        {
            Console.SetOut(stdout);
        }
        if (exit != ExitCodes.Ok) throw new PruneStageException(name, exit);
        var result = JsonNode.Parse(captured.ToString()) as JsonObject
            ?? throw new InvalidOperationException($"stage {name}: e3 {args[0]} printed no JSON object");
        Directory.CreateDirectory(_stages);
        AtomicFile.WriteAllText(ResultFile(name), result.ToJsonString(new() { WriteIndented = true }));
        return result;
    }

    string ResultFile(string name) => Path.Combine(_stages, name + ".json");

    static string Quote(string a) => a.Contains(' ') ? $"\"{a}\"" : a;
}

/// <summary>A pipeline stage that exited non-zero; its own error line was already printed.</summary>
internal sealed class PruneStageException(string stage, int exitCode)
    : Exception($"stage '{stage}' failed (exit {exitCode}); fix the cause and rerun with --resume to continue from there")
{
    public string Stage { get; } = stage;
}
