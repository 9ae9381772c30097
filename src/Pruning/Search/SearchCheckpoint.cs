using E3.Interop.IO;
using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.IO;
using E3.Optim;
using E3.Pruning.Masks;

namespace E3.Pruning.Search;

/// <summary>
/// A search checkpoint folder: <c>search-state.json</c> (format "e3-search-checkpoint", version 1: options
/// fingerprint, step, α, loss and keep-probability history, and the name of the optimizer file) and
/// <c>adamw-&lt;step&gt;.bin</c> (<see cref="AdamW.Save"/>). The optimizer file is written first and the state file,
/// which names it, is then replaced atomically, so a kill at any moment leaves a consistent pair; older optimizer
/// files are removed afterwards. No RNG state is stored: data and noise are keyed by step.
/// </summary>
internal static class SearchCheckpoint
{
    public const string StateFileName = "search-state.json";
    public const string FormatName = "e3-search-checkpoint";
    public const int FormatVersion = 1;

    /// <summary>True when <paramref name="directory"/> holds a state file.</summary>
    public static bool Exists(string directory) => File.Exists(Path.Combine(directory, StateFileName));

    /// <summary>Writes the state and the optimizer of a search at <see cref="SearchState.Step"/>.</summary>
    public static void Save(string directory, string fingerprint, SearchState state, AdamW optimizer)
    {
        Directory.CreateDirectory(directory);
        string optimizerFile = $"adamw-{state.Step:D8}.bin";
        using (var file = AtomicFile.Create(Path.Combine(directory, optimizerFile)))
        {
            optimizer.Save(file.Stream);
            file.Commit();
        }
        var o = new JsonObject
        {
            ["format"] = FormatName,
            ["format_version"] = FormatVersion,
            ["fingerprint"] = fingerprint,
            ["step"] = state.Step,
            ["optimizer_file"] = optimizerFile,
            ["alpha"] = Numbers(state.Alpha),
            ["loss_history"] = new JsonArray(state.LossHistory.Select(p => (JsonNode)new JsonObject { ["step"] = p.Step, ["loss"] = p.Loss }).ToArray()),
            ["keep_probability"] = new JsonArray(state.KeepProbability.Select(row => (JsonNode)Numbers(row)).ToArray()),
        };
        string path = Path.Combine(directory, StateFileName);
        using (var file = AtomicFile.Create(path))
        {
            using (var writer = new Utf8JsonWriter(file.Stream)) o.WriteTo(writer);
            file.Commit();
        }
        foreach (var stale in Directory.EnumerateFiles(directory, "adamw-*.bin"))
            if (Path.GetFileName(stale) != optimizerFile) File.Delete(stale);
    }

    /// <summary>
    /// Reads a checkpoint into a new state and restores <paramref name="optimizer"/>. Throws
    /// <see cref="ModelFormatException"/> (file, field, problem) for a missing, corrupt or foreign checkpoint:
    /// a fingerprint other than <paramref name="fingerprint"/> means other options, model, data or teacher.
    /// </summary>
    public static SearchState Load(string directory, string fingerprint, int layers, AdamW optimizer)
    {
        string path = Path.Combine(directory, StateFileName);
        if (!File.Exists(path)) throw new ModelFormatException(path, "file", "not found: nothing to resume (run without --resume to start)");
        var o = JsonFields.ReadObject(path, "corrupt checkpoint: ");
        if (Get<string>(o, path, "format") != FormatName) throw new ModelFormatException(path, "format", $"is not '{FormatName}'");
        int version = Get<int>(o, path, "format_version");
        if (version != FormatVersion) throw new ModelFormatException(path, "format_version", $"{version} is not supported (this build reads {FormatVersion})");
        string saved = Get<string>(o, path, "fingerprint");
        if (saved != fingerprint)
            throw new ModelFormatException(path, "fingerprint", $"{saved} does not match this run's {fingerprint}: the checkpoint was made with other options, model, data or teacher");
        long step = Get<long>(o, path, "step");
        if (step < 0) throw new ModelFormatException(path, "step", $"{step} is negative");
        var alpha = Floats(o["alpha"], path, "alpha");
        if (alpha.Length != layers) throw new ModelFormatException(path, "alpha", $"holds {alpha.Length} values; the model has {layers} layers");
        var state = new SearchState(alpha) { Step = step };
        var losses = o["loss_history"] as JsonArray ?? throw new ModelFormatException(path, "loss_history", "missing or not an array");
        for (int i = 0; i < losses.Count; i++)
        {
            var p = losses[i] as JsonObject ?? throw new ModelFormatException(path, $"loss_history[{i}]", "is not an object");
            state.RecordLoss(new LossPoint(Get<long>(p, path, "step", $"loss_history[{i}].step"), Get<double>(p, path, "loss", $"loss_history[{i}].loss")));
        }
        var keep = o["keep_probability"] as JsonArray ?? throw new ModelFormatException(path, "keep_probability", "missing or not an array");
        for (int i = 0; i < keep.Count; i++)
        {
            var row = Floats(keep[i], path, $"keep_probability[{i}]");
            if (row.Length != layers) throw new ModelFormatException(path, $"keep_probability[{i}]", $"holds {row.Length} values; expected {layers}");
            state.RecordKeepProbability(row);
        }
        if (state.LossHistory.Count != step || state.KeepProbability.Count != step)
            throw new ModelFormatException(path, "loss_history", $"{state.LossHistory.Count} losses and {state.KeepProbability.Count} keep rows for {step} steps");
        string optimizerFile = Get<string>(o, path, "optimizer_file");
        if (optimizerFile != Path.GetFileName(optimizerFile)) throw new ModelFormatException(path, "optimizer_file", $"'{optimizerFile}' must be a file name in the checkpoint folder");
        optimizer.Load(Path.Combine(directory, optimizerFile));
        if (optimizer.Steps != step)
            throw new ModelFormatException(path, "optimizer_file", $"{optimizerFile} holds {optimizer.Steps} optimizer steps; the state is at step {step}");
        return state;
    }

    private static JsonArray Numbers(IEnumerable<float> values) => new(values.Select(v => (JsonNode)(double)v).ToArray());

    // A float widened to double prints and parses back exactly, so α survives the round trip bit for bit.
    private static float[] Floats(JsonNode? node, string path, string field)
    {
        var array = node as JsonArray ?? throw new ModelFormatException(path, field, "missing or not an array");
        var result = new float[array.Count];
        for (int i = 0; i < result.Length; i++)
        {
            if (array[i] is not JsonValue v || !v.TryGetValue(out double x) || !double.IsFinite(x))
                throw new ModelFormatException(path, $"{field}[{i}]", $"{array[i]?.ToJsonString() ?? "null"} is not a finite number");
            result[i] = (float)x;
        }
        return result;
    }

    private static T Get<T>(JsonObject o, string path, string key, string? field = null) => JsonFields.Get<T>(o, path, key, field);
}
