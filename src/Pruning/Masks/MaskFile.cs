using E3.Interop.IO;
using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.IO;

namespace E3.Pruning.Masks;

/// <summary>One point of a search's loss curve.</summary>
public readonly record struct LossPoint(long Step, double Loss);

/// <summary>
/// mask.json: which layers a method keeps, for which model, and how it got there. Written by <c>e3 search</c> and
/// <c>e3 baseline</c>, read by <c>e3 distill</c>, <c>e3 export</c>, <c>e3 eval</c> and <c>e3 compare</c>.
/// </summary>
/// <remarks>
/// Format (version 1), JSON with snake_case keys: <c>format</c> = "e3-layer-mask", <c>format_version</c>, <c>method</c>,
/// <c>model</c> {<c>config_hash</c> (SHA-256 of config.json, <see cref="ModelConfig.Hash"/>), <c>model_type</c>},
/// <c>num_layers</c> (L), <c>keep</c> (k), <c>kept</c> and <c>dropped</c> (sorted layer indices, disjoint, covering 0..L−1),
/// and optionally <c>alpha</c> (final mask logits, L values), <c>scores</c> (a baseline's per-layer scores, L values),
/// <c>tau</c>, <c>steps</c>, <c>tokens</c>, <c>seed</c> and <c>loss_history</c> ([{step, loss}]).
/// </remarks>
public sealed record MaskFile
{
    /// <summary>The <c>format</c> value that marks a file as a layer mask.</summary>
    public const string FormatName = "e3-layer-mask";
    /// <summary>The <c>format_version</c> this build writes and the only one it reads.</summary>
    public const int CurrentVersion = 1;

    /// <summary>How the mask was chosen: "e3" (learned), "bi", "angular", "last", "random", "drop-one-kl", …</summary>
    public required string Method { get; init; }
    /// <summary><c>model.config_hash</c>: <see cref="ModelConfig.Hash"/> of the model the mask was made for.</summary>
    public required string ConfigHash { get; init; }
    /// <summary><c>model.model_type</c>: that model's config.json model_type.</summary>
    public required string ModelType { get; init; }
    /// <summary><c>num_layers</c>: L, the model's decoder layer count.</summary>
    public required int NumLayers { get; init; }
    /// <summary>Kept layer indices, ascending.</summary>
    public required IReadOnlyList<int> Kept { get; init; }
    /// <summary><c>alpha</c>: the learned search's final mask logits, one per layer; null for a baseline.</summary>
    public IReadOnlyList<double>? Alpha { get; init; }
    /// <summary><c>scores</c>: a baseline's per-layer scores (bi: BI_l; drop-one-kl: KL with the layer removed alone); null when the method has none.</summary>
    public IReadOnlyList<double>? Scores { get; init; }
    /// <summary><c>tau</c>: the Gumbel-TopK temperature τ of the search's last step; null for a baseline.</summary>
    public double? Tau { get; init; }
    /// <summary><c>steps</c>: search steps taken, or layers dropped one at a time by drop-one-kl; 0 otherwise.</summary>
    public long Steps { get; init; }
    /// <summary><c>tokens</c>: training or calibration tokens the method read; 0 when none.</summary>
    public long Tokens { get; init; }
    /// <summary><c>seed</c>: the seed of the method's data windows, noise or shuffle; null for a method that uses none (last).</summary>
    public ulong? Seed { get; init; }
    /// <summary><c>loss_history</c>: the search's distillation loss per step, or drop-one-kl's KL after i layers dropped; empty otherwise.</summary>
    public IReadOnlyList<LossPoint> LossHistory { get; init; } = [];

    /// <summary>Dropped layer indices, ascending.</summary>
    public IReadOnlyList<int> Dropped => Enumerable.Range(0, NumLayers).Except(Kept).ToArray();

    /// <summary><c>keep</c>: k, the number of kept layers.</summary>
    public int Keep => Kept.Count;

    /// <summary>A mask for <paramref name="config"/> keeping <paramref name="kept"/> (any order, no duplicates).</summary>
    public static MaskFile For(ModelConfig config, string method, IEnumerable<int> kept)
    {
        var k = kept.Order().ToArray();
        var m = new MaskFile { Method = method, ConfigHash = config.Hash(), ModelType = config.ModelType, NumLayers = config.NumLayers, Kept = k };
        m.Validate("<memory>");
        return m;
    }

    /// <summary>The gates: 1 for kept layers, 0 for dropped ones.</summary>
    public LayerMask ToLayerMask() => LayerMask.Dropping(NumLayers, Dropped);

    /// <summary>Throws unless this mask was made for <paramref name="config"/> (same layer count and config hash).</summary>
    public void EnsureMatches(ModelConfig config, string maskPath)
    {
        if (config.NumLayers != NumLayers)
            throw new ModelFormatException(maskPath, "num_layers", $"{NumLayers}, but the model at {config.SourcePath} has {config.NumLayers} layers");
        string hash = config.Hash();
        if (!string.Equals(hash, ConfigHash, StringComparison.Ordinal))
            throw new ModelFormatException(maskPath, "model.config_hash", $"{ConfigHash} does not match the model at {config.SourcePath} ({hash}): the mask was made for a different model");
    }

    void Validate(string path)
    {
        if (string.IsNullOrWhiteSpace(Method)) throw new ModelFormatException(path, "method", "is empty");
        if (NumLayers <= 0) throw new ModelFormatException(path, "num_layers", $"{NumLayers} must be positive");
        if (Kept.Count is 0 || Kept.Count > NumLayers) throw new ModelFormatException(path, "keep", $"{Kept.Count} is out of range 1..{NumLayers}");
        for (int i = 0; i < Kept.Count; i++)
        {
            if (Kept[i] < 0 || Kept[i] >= NumLayers) throw new ModelFormatException(path, $"kept[{i}]", $"{Kept[i]} is out of range 0..{NumLayers - 1}");
            if (i > 0 && Kept[i] <= Kept[i - 1]) throw new ModelFormatException(path, $"kept[{i}]", $"{Kept[i]} is not above kept[{i - 1}] = {Kept[i - 1]} (indices must be ascending and unique)");
        }
        CheckPerLayer(path, "alpha", Alpha);
        CheckPerLayer(path, "scores", Scores);
        if (Tau is { } t && !(t > 0 && double.IsFinite(t))) throw new ModelFormatException(path, "tau", $"{t} must be positive and finite");
        if (Steps < 0) throw new ModelFormatException(path, "steps", $"{Steps} is negative");
        if (Tokens < 0) throw new ModelFormatException(path, "tokens", $"{Tokens} is negative");
    }

    void CheckPerLayer(string path, string field, IReadOnlyList<double>? values)
    {
        if (values == null) return;
        if (values.Count != NumLayers) throw new ModelFormatException(path, field, $"holds {values.Count} values; num_layers is {NumLayers}");
        for (int i = 0; i < values.Count; i++)
            if (!double.IsFinite(values[i])) throw new ModelFormatException(path, $"{field}[{i}]", $"{values[i]} is not finite");
    }

    /// <summary>Writes the mask atomically (temp file, then rename).</summary>
    public void Save(string path)
    {
        Validate(path);
        var o = new JsonObject
        {
            ["format"] = FormatName,
            ["format_version"] = CurrentVersion,
            ["method"] = Method,
            ["model"] = new JsonObject { ["config_hash"] = ConfigHash, ["model_type"] = ModelType },
            ["num_layers"] = NumLayers,
            ["keep"] = Keep,
            ["kept"] = new JsonArray(Kept.Select(i => (JsonNode)i).ToArray()),
            ["dropped"] = new JsonArray(Dropped.Select(i => (JsonNode)i).ToArray()),
        };
        if (Alpha != null) o["alpha"] = new JsonArray(Alpha.Select(a => (JsonNode)a).ToArray());
        if (Scores != null) o["scores"] = new JsonArray(Scores.Select(a => (JsonNode)a).ToArray());
        if (Tau != null) o["tau"] = Tau;
        o["steps"] = Steps;
        o["tokens"] = Tokens;
        if (Seed != null) o["seed"] = Seed;
        o["loss_history"] = new JsonArray(LossHistory.Select(p => (JsonNode)new JsonObject { ["step"] = p.Step, ["loss"] = p.Loss }).ToArray());
        using var file = AtomicFile.Create(path);
        using (var w = new Utf8JsonWriter(file.Stream, new JsonWriterOptions { Indented = true })) o.WriteTo(w);
        file.Commit();
    }

    /// <summary>Reads and validates a mask file; every problem names the file and the field.</summary>
    public static MaskFile Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, "file", "not found");
        var o = JsonFields.ReadObject(path);
        string format = Get<string>(o, path, "format");
        if (format != FormatName) throw new ModelFormatException(path, "format", $"'{format}' is not '{FormatName}'");
        int version = Get<int>(o, path, "format_version");
        if (version != CurrentVersion) throw new ModelFormatException(path, "format_version", $"{version} is not supported (this build reads {CurrentVersion})");
        var model = o["model"] as JsonObject ?? throw new ModelFormatException(path, "model", "missing or not an object");
        var kept = Ints(o, path, "kept");
        var dropped = Ints(o, path, "dropped");
        var m = new MaskFile
        {
            Method = Get<string>(o, path, "method"),
            ConfigHash = Get<string>(model, path, "config_hash", "model.config_hash"),
            ModelType = Get<string>(model, path, "model_type", "model.model_type"),
            NumLayers = Get<int>(o, path, "num_layers"),
            Kept = kept,
            Alpha = Doubles(o, path, "alpha"),
            Scores = Doubles(o, path, "scores"),
            Tau = o["tau"] is null ? null : Get<double>(o, path, "tau"),
            Steps = o["steps"] is null ? 0 : Get<long>(o, path, "steps"),
            Tokens = o["tokens"] is null ? 0 : Get<long>(o, path, "tokens"),
            Seed = o["seed"] is null ? null : Get<ulong>(o, path, "seed"),
            LossHistory = (o["loss_history"] as JsonArray ?? []).Select((n, i) => n is JsonObject p
                ? new LossPoint(Get<long>(p, path, "step", $"loss_history[{i}].step"), Get<double>(p, path, "loss", $"loss_history[{i}].loss"))
                : throw new ModelFormatException(path, $"loss_history[{i}]", "is not an object")).ToArray(),
        };
        int keep = Get<int>(o, path, "keep");
        if (keep != kept.Length) throw new ModelFormatException(path, "keep", $"{keep}, but kept lists {kept.Length} layers");
        m.Validate(path);
        if (!dropped.SequenceEqual(m.Dropped))
            throw new ModelFormatException(path, "dropped", $"[{string.Join(",", dropped)}] is not the complement of kept in 0..{m.NumLayers - 1} ([{string.Join(",", m.Dropped)}])");
        return m;
    }

    static T Get<T>(JsonObject o, string path, string key, string? field = null) => JsonFields.Get<T>(o, path, key, field);

    static int[] Ints(JsonObject o, string path, string key) =>
        (o[key] as JsonArray ?? throw new ModelFormatException(path, key, "missing or not an array"))
        .Select((n, i) => n is JsonValue v && v.TryGetValue<int>(out int x) ? x : throw new ModelFormatException(path, $"{key}[{i}]", $"{n?.ToJsonString() ?? "null"} is not an integer")).ToArray();

    static double[]? Doubles(JsonObject o, string path, string key) =>
        o[key] is null ? null
        : (o[key] as JsonArray ?? throw new ModelFormatException(path, key, "not an array"))
            .Select((n, i) => n is JsonValue v && v.TryGetValue<double>(out double x) ? x : throw new ModelFormatException(path, $"{key}[{i}]", $"{n?.ToJsonString() ?? "null"} is not a number")).ToArray();
}
