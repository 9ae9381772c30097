using E3.Interop.IO;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.IO;
using E3.Pruning.Masks;

namespace E3.Pruning.Baselines;

/// <summary>
/// The state of a greedy drop-one-KL run after its last finished step, so an interrupted run resumes there. Each step
/// is a deterministic function of the model, the calibration tokens and the steps before it, so a resumed run ends
/// with the same mask, bit for bit, as an uninterrupted one.
/// </summary>
/// <remarks>
/// JSON: <c>format</c> = "e3-greedy-kl-checkpoint", <c>format_version</c> 1, <c>config_hash</c>, <c>drop</c> (n),
/// <c>calibration_hash</c> (XxHash64 of T, B and every calibration token id), <c>order</c>, <c>kl_after_step</c> and <c>drop_one_kl</c> (L values). A checkpoint made for another model, another
/// n or other calibration tokens is refused, naming the field that differs.
/// </remarks>
internal sealed record GreedyKlCheckpoint(string ConfigHash, int Drop, string CalibrationHash, GreedyKlResult State)
{
    public const string FormatName = "e3-greedy-kl-checkpoint";
    public const string FileName = "drop-one-kl.checkpoint.json";

    /// <summary>The model and calibration hashes a checkpoint must carry to continue a run on this model and data.</summary>
    public static (string ConfigHash, string CalibrationHash) Identity(ModelConfig config, CalibrationSet data)
    {
        var hash = new XxHash64();
        hash.Append(BitConverter.GetBytes(data.SequenceLength));
        hash.Append(BitConverter.GetBytes(data.Batch));
        foreach (var batch in data.Batches) hash.Append(MemoryMarshal.AsBytes(batch.AsSpan()));
        return (config.Hash(), Convert.ToHexStringLower(hash.GetCurrentHash()));
    }

    /// <summary>Writes atomically (temp file, then rename).</summary>
    public void Save(string path)
    {
        var o = new JsonObject
        {
            ["format"] = FormatName,
            ["format_version"] = 1,
            ["config_hash"] = ConfigHash,
            ["drop"] = Drop,
            ["calibration_hash"] = CalibrationHash,
            ["order"] = new JsonArray(State.Order.Select(l => (JsonNode?)l).ToArray()),
            ["kl_after_step"] = new JsonArray(State.KlAfterStep.Select(x => (JsonNode?)x).ToArray()),
            ["drop_one_kl"] = new JsonArray(State.DropOneKl.Select(x => (JsonNode?)x).ToArray()),
        };
        using var file = AtomicFile.Create(path);
        using (var w = new Utf8JsonWriter(file.Stream)) o.WriteTo(w);
        file.Commit();
    }

    /// <summary>
    /// Reads <paramref name="path"/> and checks it continues a run of <paramref name="drop"/> steps on
    /// <paramref name="config"/> with <paramref name="data"/>. Errors are <see cref="ModelFormatException"/> naming
    /// the file, the field and the value.
    /// </summary>
    public static GreedyKlCheckpoint Load(string path, ModelConfig config, CalibrationSet data, int drop)
    {
        var o = JsonFields.ReadObject(path, "is not valid JSON: ");
        var (configHash, calibrationHash) = Identity(config, data);
        Expect(path, o, "format", FormatName);
        Expect(path, o, "format_version", "1");
        Expect(path, o, "config_hash", configHash, "the checkpoint is for a different model");
        Expect(path, o, "drop", drop.ToString(), "the checkpoint drops a different number of layers");
        Expect(path, o, "calibration_hash", calibrationHash, "the checkpoint used different calibration tokens (--data, --tokens, --seq, --batch or --seed changed)");
        int layers = config.NumLayers;
        int[] order = Numbers(path, o, "order").Select((x, i) => x == Math.Floor(x) && x >= 0 && x < layers ? (int)x
            : throw new ModelFormatException(path, $"order[{i}]", $"{x} is not a layer index in 0..{layers - 1}")).ToArray();
        if (order.Distinct().Count() != order.Length) throw new ModelFormatException(path, "order", $"[{string.Join(",", order)}] repeats a layer");
        if (order.Length > drop) throw new ModelFormatException(path, "order", $"holds {order.Length} layers; the run drops {drop}");
        double[] klAfter = Numbers(path, o, "kl_after_step");
        if (klAfter.Length != order.Length) throw new ModelFormatException(path, "kl_after_step", $"holds {klAfter.Length} values; order holds {order.Length}");
        double[] dropOne = Numbers(path, o, "drop_one_kl");
        if (dropOne.Length != (order.Length == 0 ? 0 : layers)) throw new ModelFormatException(path, "drop_one_kl", $"holds {dropOne.Length} values; expected {(order.Length == 0 ? 0 : layers)}");
        return new GreedyKlCheckpoint(configHash, drop, calibrationHash, new GreedyKlResult(order, klAfter, dropOne));
    }

    static void Expect(string path, JsonObject o, string field, string expected, string? meaning = null)
    {
        string actual = o[field] is JsonValue v ? v.ToJsonString().Trim('"') : "(missing)";
        if (actual != expected) throw new ModelFormatException(path, field, $"is {actual}, expected {expected}{(meaning is null ? "" : $": {meaning}")}");
    }

    static double[] Numbers(string path, JsonObject o, string field) =>
        o[field] is JsonArray a
            ? a.Select((n, i) => n is JsonValue v && v.TryGetValue(out double x) && double.IsFinite(x) ? x
                : throw new ModelFormatException(path, $"{field}[{i}]", $"{n?.ToJsonString() ?? "null"} is not a finite number")).ToArray()
            : throw new ModelFormatException(path, field, "missing or not an array");
}
