using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace E3.Model;

/// <summary>Decoder families E3 understands; they differ only in q/k norms and projection biases.</summary>
public enum Architecture
{
    /// <summary>Per-head q_norm/k_norm, no biases.</summary>
    Qwen3,
    /// <summary>No q/k norm, no biases (unless attention_bias).</summary>
    Llama,
    /// <summary>q/k/v projection biases, no q/k norm.</summary>
    Qwen2,
}

/// <summary>
/// The fields of a Hugging Face config.json that the forward pass needs. The original JSON is kept so that an
/// export can rewrite only the fields it changes.
/// </summary>
public sealed class ModelConfig
{
    public required Architecture Architecture { get; init; }
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required float RmsNormEps { get; init; }
    public required float RopeTheta { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Whether q/k/v projections carry biases (always for qwen2; attention_bias for the others).</summary>
    public required bool QkvBias { get; init; }
    /// <summary>Whether o_proj carries a bias (attention_bias in qwen3 and llama; never in qwen2).</summary>
    public required bool OutputBias { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public string? TorchDtype { get; init; }
    public IReadOnlyList<string>? LayerTypes { get; init; }
    public int? MaxWindowLayers { get; init; }
    public JsonObject Json { get; init; } = new();
    public string SourcePath { get; init; } = "<memory>";

    public bool HasQkNorm => Architecture == Architecture.Qwen3;

    /// <summary>Hex SHA-256 of the canonical config JSON: the model identity stored in masks and caches.</summary>
    public string Hash()
    {
        var bytes = Encoding.UTF8.GetBytes(Canonical(Json)!.ToJsonString());
        return Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    // The same config written by another tool (keys in another order, 1e-06 for 1E-06, 28.0 for 28) hashes the same.
    static JsonNode? Canonical(JsonNode? node) => node switch
    {
        JsonObject o => new JsonObject(o.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, Canonical(p.Value)))),
        JsonArray a => new JsonArray(a.Select(Canonical).ToArray()),
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => JsonValue.Create(NumberOf(v)!.Value),
        _ => node?.DeepClone(),
    };

    public static ModelConfig Load(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new ModelFormatException(path, "config.json", "file not found");
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "json", $"malformed JSON: {e.Message}");
        }
        if (node is not JsonObject obj) throw new ModelFormatException(path, "json", "top level is not an object");
        return Parse(obj, path);
    }

    public static ModelConfig Parse(JsonObject obj, string source = "<memory>")
    {
        string modelType = RequiredString(obj, "model_type", source);
        Architecture arch = modelType switch
        {
            "qwen3" => Architecture.Qwen3,
            "llama" => Architecture.Llama,
            "qwen2" => Architecture.Qwen2,
            _ => throw new ModelFormatException(source, "model_type", $"unsupported model type '{modelType}' (supported: qwen3, llama, qwen2)"),
        };
        int hidden = RequiredPositiveInt(obj, "hidden_size", source);
        int heads = RequiredPositiveInt(obj, "num_attention_heads", source);
        int kvHeads = OptionalInt(obj, "num_key_value_heads", source) ?? heads;
        if (kvHeads <= 0 || heads % kvHeads != 0)
            throw new ModelFormatException(source, "num_key_value_heads", $"{kvHeads} does not divide num_attention_heads={heads}");
        int? headDimField = OptionalInt(obj, "head_dim", source);
        int headDim = headDimField ?? (hidden % heads == 0 ? hidden / heads
            : throw new ModelFormatException(source, "head_dim", $"absent and hidden_size={hidden} is not divisible by num_attention_heads={heads}"));
        if (headDim <= 0 || headDim % 2 != 0) throw new ModelFormatException(source, "head_dim", $"{headDim} must be positive and even (rotary pairs)");
        bool attentionBias = OptionalBool(obj, "attention_bias") ?? false;
        float theta = RopeThetaOf(obj, source);
        var layerTypes = obj["layer_types"] is JsonArray lt ? lt.Select(n => StringValue(n, "layer_types", source)).ToList() : null;
        int layers = RequiredPositiveInt(obj, "num_hidden_layers", source);
        if (layerTypes != null && layerTypes.Count != layers)
            throw new ModelFormatException(source, "layer_types", $"has {layerTypes.Count} entries but num_hidden_layers={layers}");
        float eps = (float)(OptionalDouble(obj, "rms_norm_eps", source) ?? 1e-6);
        if (!(eps > 0)) throw new ModelFormatException(source, "rms_norm_eps", $"{eps} must be positive");
        int maxPositions = OptionalInt(obj, "max_position_embeddings", source) ?? 32768;
        if (maxPositions <= 0) throw new ModelFormatException(source, "max_position_embeddings", $"{maxPositions} must be positive");
        string? dtypeField = obj.ContainsKey("torch_dtype") ? "torch_dtype" : obj.ContainsKey("dtype") ? "dtype" : null;
        string? torchDtype = dtypeField == null ? null : OptionalString(obj, dtypeField, source);
        // What the weights are said to be stored in (e3 plan reads it); the float types a checkpoint can hold.
        if (torchDtype is not (null or "float32" or "bfloat16" or "float16"))
            throw new ModelFormatException(source, dtypeField!, $"'{torchDtype}' is not float32, bfloat16 or float16");
        return new ModelConfig
        {
            Architecture = arch,
            ModelType = modelType,
            VocabSize = RequiredPositiveInt(obj, "vocab_size", source),
            HiddenSize = hidden,
            IntermediateSize = RequiredPositiveInt(obj, "intermediate_size", source),
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = eps,
            RopeTheta = theta,
            TieWordEmbeddings = OptionalBool(obj, "tie_word_embeddings") ?? false,
            QkvBias = arch == Architecture.Qwen2 || attentionBias,
            OutputBias = arch != Architecture.Qwen2 && attentionBias,
            MaxPositionEmbeddings = maxPositions,
            TorchDtype = torchDtype,
            LayerTypes = layerTypes,
            MaxWindowLayers = OptionalInt(obj, "max_window_layers", source),
            Json = obj,
            SourcePath = source,
        };
    }

    static float RopeThetaOf(JsonObject obj, string source)
    {
        // Newer transformers nest it in rope_parameters; older ones keep rope_theta at top level.
        double? theta = OptionalDouble(obj, "rope_theta", source);
        if (theta == null && obj["rope_parameters"] is JsonObject rp) theta = OptionalDouble(rp, "rope_theta", source);
        // Scaled variants (linear, yarn, llama3, ...) change the frequencies; refuse them rather than run them wrong.
        foreach (string holder in new[] { "rope_scaling", "rope_parameters" })
        {
            if (obj[holder] is not JsonObject rope) continue;
            string? type = OptionalString(rope, "rope_type", source, holder + ".") ?? OptionalString(rope, "type", source, holder + ".");
            if (type != null && type != "default")
                throw new ModelFormatException(source, holder + ".rope_type", $"'{type}' is not supported (only default rotary embeddings)");
        }
        double value = theta ?? 10000.0;
        if (!(value > 0)) throw new ModelFormatException(source, "rope_theta", $"{value} must be positive");
        return (float)value;
    }

    static string? OptionalString(JsonObject obj, string key, string source, string fieldPrefix = "")
        => obj[key] is JsonNode node ? StringValue(node, fieldPrefix + key, source) : null;

    static string StringValue(JsonNode? node, string field, string source)
        => node is JsonValue v && v.TryGetValue(out string? s) ? s
            : throw new ModelFormatException(source, field, $"{node?.ToJsonString() ?? "null"} is not a string");

    static string RequiredString(JsonObject obj, string key, string source)
        => obj[key] is JsonValue v && v.TryGetValue(out string? s) ? s
            : throw new ModelFormatException(source, key, "required field missing or not a string");

    static int RequiredPositiveInt(JsonObject obj, string key, string source)
    {
        int? v = OptionalInt(obj, key, source) ?? throw new ModelFormatException(source, key, "required field missing");
        if (v <= 0) throw new ModelFormatException(source, key, $"{v} must be positive");
        return v.Value;
    }

    static int? OptionalInt(JsonObject obj, string key, string source)
    {
        if (obj[key] is not JsonValue v) return null;
        double? d = NumberOf(v);
        if (d is not double x || x != Math.Floor(x)) throw new ModelFormatException(source, key, $"'{v.ToJsonString()}' is not an integer");
        if (x is < int.MinValue or > int.MaxValue) throw new ModelFormatException(source, key, $"{v.ToJsonString()} is out of range");
        return (int)x;
    }

    static double? OptionalDouble(JsonObject obj, string key, string source)
    {
        if (obj[key] is not JsonValue v) return null;
        return NumberOf(v) ?? throw new ModelFormatException(source, key, $"'{v.ToJsonString()}' is not a number");
    }

    // Values parsed from a file and values built in memory (int, float) are both read through their JSON text.
    static double? NumberOf(JsonValue v) =>
        v.GetValueKind() == JsonValueKind.Number ? double.Parse(v.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture) : null;

    static bool? OptionalBool(JsonObject obj, string key)
        => obj[key] is JsonValue v && v.TryGetValue(out bool b) ? b : null;
}

/// <summary>A model file that does not say what it must: names the file, the field and the value.</summary>
public sealed class ModelFormatException(string file, string field, string problem)
    : Exception($"{file}: {field}: {problem}")
{
    public string File { get; } = file;
    public string Field { get; } = field;
}
