using E3.Interop.IO;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model.IO;
using E3.Optim;
using E3.Pruning.Masks;

namespace E3.Pruning.Distill;

/// <summary>
/// The state a run resumes from, kept in a checkpoint folder: each save writes a complete <c>step-NNNNNNNN/</c>
/// folder (trainable fp32 values in <c>params.safetensors</c>, AdamW moments in <c>adamw.bin</c>, step, options
/// fingerprint and loss history in <c>state.json</c>) under a temp name, renames it into place, then points the
/// <c>latest</c> file at it (atomically) and deletes older step folders. A kill at any moment leaves
/// <c>latest</c> naming a complete folder, or no <c>latest</c> at all.
/// </summary>
internal sealed class TrainingCheckpoint
{
    const string LatestFile = "latest";
    const string ParamsFile = "params.safetensors";
    const string OptimizerFile = "adamw.bin";
    const string StateFile = "state.json";
    const string Format = "e3-training-checkpoint";
    const int Version = 1;

    /// <param name="folder">The checkpoint folder (created on the first save).</param>
    public TrainingCheckpoint(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        Folder = folder;
    }

    public string Folder { get; }

    /// <summary>Writes the state after <paramref name="step"/> completed optimizer steps.</summary>
    public void Save(long step, string fingerprint, TrainableParameters parameters, AdamW optimizer, IReadOnlyList<LossPoint> history)
    {
        Directory.CreateDirectory(Folder);
        string name = $"step-{step:D8}";
        string final = Path.Combine(Folder, name);
        string temp = Path.Combine(Folder, $".{name}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(temp)) Directory.Delete(temp, true);
        Directory.CreateDirectory(temp);
        try
        {
            // Streamed from the arrays themselves: a copy of every value would add 4 bytes a trained parameter to the
            // host's peak at each save (32 GB for an 8B model trained whole).
            var layouts = parameters.Names.Select((n, i) => new TensorLayout(n, SafeTensorsDType.F32, [parameters.Values[i].Length],
                (long)parameters.Values[i].Length * sizeof(float))).ToArray();
            SafeTensorsWriter.WriteStreamed(Path.Combine(temp, ParamsFile), layouts,
                (i, stream) => stream.Write(MemoryMarshal.AsBytes(parameters.Values[i].AsSpan())));
            using (var file = AtomicFile.Create(Path.Combine(temp, OptimizerFile)))
            {
                optimizer.Save(file.Stream);
                file.Commit();
            }
            var state = new JsonObject
            {
                ["format"] = Format, ["version"] = Version, ["step"] = step, ["fingerprint"] = fingerprint,
                ["loss_history"] = new JsonArray(history.Select(p => (JsonNode)new JsonArray(p.Step, p.Loss)).ToArray()),
            };
            using (var file = AtomicFile.Create(Path.Combine(temp, StateFile)))
            {
                file.Stream.Write(Utf8(state, indented: true));
                file.Commit();
            }
            if (Directory.Exists(final)) Directory.Delete(final, true);
            Directory.Move(temp, final);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, true);
        }
        using (var latest = AtomicFile.Create(Path.Combine(Folder, LatestFile)))
        {
            latest.Stream.Write(System.Text.Encoding.UTF8.GetBytes(name + "\n"));
            latest.Commit();
        }
        foreach (var old in Directory.GetDirectories(Folder, "step-*"))
            if (Path.GetFileName(old) != name) Directory.Delete(old, true);
    }

    /// <summary>True when a completed save exists.</summary>
    public bool Exists => File.Exists(Path.Combine(Folder, LatestFile));

    /// <summary>
    /// Restores the latest save into <paramref name="parameters"/> and <paramref name="optimizer"/> and returns its
    /// step and loss history. Every mismatch (another run's fingerprint, a missing or truncated file, a tensor of the
    /// wrong name or size) is a <see cref="TrainingCheckpointException"/> naming the file and field.
    /// </summary>
    public (long Step, List<LossPoint> History) Load(string fingerprint, TrainableParameters parameters, AdamW optimizer)
    {
        string latestPath = Path.Combine(Folder, LatestFile);
        if (!File.Exists(latestPath)) throw new TrainingCheckpointException(latestPath, "file", "not found: there is no checkpoint to resume from");
        string name = File.ReadAllText(latestPath).Trim();
        if (!name.StartsWith("step-", StringComparison.Ordinal) || name.Contains('/') || name.Contains('\\'))
            throw new TrainingCheckpointException(latestPath, "latest", $"'{name}' is not a step folder name");
        string dir = Path.Combine(Folder, name);
        if (!Directory.Exists(dir)) throw new TrainingCheckpointException(latestPath, "latest", $"names {dir}, which does not exist");

        string statePath = Path.Combine(dir, StateFile);
        var (step, history) = ReadState(statePath, fingerprint);
        ReadParameters(Path.Combine(dir, ParamsFile), parameters);
        try
        {
            optimizer.Load(Path.Combine(dir, OptimizerFile));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new TrainingCheckpointException(Path.Combine(dir, OptimizerFile), "optimizer state", e.Message);
        }
        if (optimizer.Steps != step)
            throw new TrainingCheckpointException(Path.Combine(dir, OptimizerFile), "steps", $"{optimizer.Steps}, but {statePath} says step {step}");
        return (step, history);
    }

    static (long Step, List<LossPoint> History) ReadState(string path, string fingerprint)
    {
        if (!File.Exists(path)) throw new TrainingCheckpointException(path, "file", "not found");
        var state = JsonFields.ReadObject(path, fail: Fail);
        if (JsonFields.Get<string>(state, path, "format", fail: Fail) != Format)
            throw new TrainingCheckpointException(path, "format", $"'{state["format"]}' is not {Format}");
        long version = JsonFields.Get<long>(state, path, "version", fail: Fail);
        if (version != Version) throw new TrainingCheckpointException(path, "version", $"{version} is not supported (expected {Version})");
        string saved = JsonFields.Get<string>(state, path, "fingerprint", fail: Fail);
        if (saved != fingerprint)
            throw new TrainingCheckpointException(path, "fingerprint", $"{saved} was written by a run with other options, model or data (this run is {fingerprint})");
        long step = JsonFields.Get<long>(state, path, "step", fail: Fail);
        if (step < 0) throw new TrainingCheckpointException(path, "step", $"{step} is negative");
        var history = new List<LossPoint>();
        if (state["loss_history"] is not JsonArray points) throw new TrainingCheckpointException(path, "loss_history", "missing or not an array");
        foreach (var p in points)
        {
            if (p is not JsonArray { Count: 2 } pair || pair[0] is not JsonValue first || !first.TryGetValue(out long s)
                || pair[1] is not JsonValue second || !second.TryGetValue(out double l))
                throw new TrainingCheckpointException(path, $"loss_history[{history.Count}]", $"{p?.ToJsonString() ?? "null"} is not [step, loss]");
            if (s < 1 || s > step || (history.Count > 0 && s <= history[^1].Step))
                throw new TrainingCheckpointException(path, $"loss_history[{history.Count}]", $"step {s} is not after the previous entry and within 1..{step}");
            history.Add(new LossPoint(s, l));
        }
        return (step, history);
    }

    static void ReadParameters(string path, TrainableParameters parameters)
    {
        if (!File.Exists(path)) throw new TrainingCheckpointException(path, "file", "not found");
        try
        {
            using var ckpt = SafeTensorsCheckpoint.Open(path);
            if (ckpt.Names.Count != parameters.Names.Count)
                throw new TrainingCheckpointException(path, "tensors", $"holds {ckpt.Names.Count} tensors; this run trains {parameters.Names.Count}");
            for (int i = 0; i < parameters.Names.Count; i++)
            {
                string n = parameters.Names[i];
                if (!ckpt.Contains(n)) throw new TrainingCheckpointException(path, n, "missing");
                var entry = ckpt.Get(n);
                if (entry.DType != SafeTensorsDType.F32 || entry.ElementCount != parameters.Values[i].Length)
                    throw new TrainingCheckpointException(path, n, $"{entry.DType} {entry.ShapeText}; expected F32 [{parameters.Values[i].Length}]");
                var bytes = ckpt.GetBytes(n);
                if (NonFiniteScan.WeightProblem(bytes, E3.Backends.DType.F32) is { } problem) throw new TrainingCheckpointException(path, n, problem);
                bytes.CopyTo(MemoryMarshal.AsBytes(parameters.Values[i].AsSpan()));
            }
        }
        catch (SafeTensorsFormatException e)
        {
            throw new TrainingCheckpointException(path, "safetensors", e.Message);
        }
    }

    static TrainingCheckpointException Fail(string file, string field, string problem) => new(file, field, problem);

    /// <summary>Hex SHA-256 of <paramref name="parts"/>: identifies a run's options, model and data.</summary>
    public static string Fingerprint(JsonObject parts) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Utf8(parts, indented: false)))[..16];

    static byte[] Utf8(JsonNode node, bool indented)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented })) node.WriteTo(writer);
        return buffer.ToArray();
    }

    /// <summary>Short hex SHA-256 of a token stream (for the fingerprint).</summary>
    public static string HashTokens(ReadOnlySpan<int> tokens) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(MemoryMarshal.AsBytes(tokens)))[..16];
}
