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
    /// <summary>The decoder family, from model_type.</summary>
    public required Architecture Architecture { get; init; }
    /// <summary>model_type as written: qwen3, llama or qwen2.</summary>
    public required string ModelType { get; init; }
    /// <summary>vocab_size: rows of the embedding and of the LM head.</summary>
    public required int VocabSize { get; init; }
    /// <summary>hidden_size: width of the residual stream.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>intermediate_size: width of the MLP's gate and up projections.</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>num_hidden_layers: decoder layers, one gate each in a <see cref="LayerMask"/>.</summary>
    public required int NumLayers { get; init; }
    /// <summary>num_attention_heads: query heads.</summary>
    public required int NumHeads { get; init; }
    /// <summary>num_key_value_heads (num_attention_heads when absent); divides <see cref="NumHeads"/>.</summary>
    public required int NumKvHeads { get; init; }
    /// <summary>head_dim (hidden_size / num_attention_heads when absent); positive and even.</summary>
    public required int HeadDim { get; init; }
    /// <summary>rms_norm_eps (1e-6 when absent).</summary>
    public required float RmsNormEps { get; init; }
    /// <summary>rope_theta, at top level or in rope_parameters (10000 when absent); only default rotary embeddings are accepted.</summary>
    public required float RopeTheta { get; init; }
    /// <summary>tie_word_embeddings (false when absent): the LM head reuses the embedding matrix.</summary>
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Whether q/k/v projections carry biases (always for qwen2; attention_bias for the others).</summary>
    public required bool QkvBias { get; init; }
    /// <summary>Whether o_proj carries a bias (attention_bias in qwen3 and llama; never in qwen2).</summary>
    public required bool OutputBias { get; init; }
    /// <summary>max_position_embeddings (32768 when absent).</summary>
    public required int MaxPositionEmbeddings { get; init; }
    /// <summary>torch_dtype (or dtype): float32, bfloat16 or float16, what the weights are said to be stored in; null when absent.</summary>
    public string? TorchDtype { get; init; }
    /// <summary>layer_types, one entry per layer; null when absent.</summary>
    public IReadOnlyList<string>? LayerTypes { get; init; }
    /// <summary>max_window_layers; null when absent.</summary>
    public int? MaxWindowLayers { get; init; }
    /// <summary>The whole config.json as read, unknown keys included; <see cref="Hash"/> is taken over it.</summary>
    public JsonObject Json { get; init; } = new();
    /// <summary>The config.json this was read from, for messages; "&lt;memory&gt;" for one built in code.</summary>
    public string SourcePath { get; init; } = "<memory>";

    /// <summary>Whether attention has per-head q_norm/k_norm (Qwen3 only).</summary>
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

    /// <summary>Reads <paramref name="path"/>: a config.json, or a folder holding one.</summary>
    /// <exception cref="ModelFormatException">The file is missing, is not a JSON object, or fails <see cref="Parse"/>'s checks.</exception>
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

    /// <summary>Reads and checks the fields of a parsed config.json; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="ModelFormatException">A required field is missing, a value is malformed or out of range, or the model type or rotary scaling is unsupported.</exception>
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
    /// <summary>The file at fault, as the caller named it.</summary>
    public string File { get; } = file;
    /// <summary>What in the file is at fault: usually a JSON key (dotted when nested) or a tensor name.</summary>
    public string Field { get; } = field;
}
