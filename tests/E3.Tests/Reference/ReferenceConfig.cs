using System.Text.Json;
using System.Text.Json.Nodes;

namespace E3.Tests.Reference;

/// <summary>
/// The subset of a Hugging Face <c>config.json</c> that defines a Qwen3, Llama or Qwen2 decoder, read with
/// System.Text.Json and the defaults of the transformers config classes. It shares nothing with the engine's parser,
/// so a misread field in either one shows up as a parity failure.
/// </summary>
/// <param name="ModelType">"qwen3", "llama" or "qwen2".</param>
/// <param name="VocabSize">Rows of the embedding and of lm_head.</param>
/// <param name="HiddenSize">Width of the residual stream.</param>
/// <param name="IntermediateSize">Width of the SwiGLU MLP.</param>
/// <param name="NumHiddenLayers">Decoder layers.</param>
/// <param name="NumAttentionHeads">Query heads.</param>
/// <param name="NumKeyValueHeads">Key/value heads (GQA groups).</param>
/// <param name="HeadDim">Per-head width; explicit in Qwen3 configs, hidden/heads when absent.</param>
/// <param name="RmsNormEps">Epsilon inside every RMSNorm.</param>
/// <param name="RopeTheta">RoPE base.</param>
/// <param name="TieWordEmbeddings">lm_head reuses the embedding matrix.</param>
/// <param name="AttentionBias">Llama/Qwen3 flag that adds biases to q, k, v and o; Qwen2 ignores it (q/k/v always biased).</param>
public sealed record ReferenceConfig(
    string ModelType,
    int VocabSize,
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    double RmsNormEps,
    double RopeTheta,
    bool TieWordEmbeddings,
    bool AttentionBias)
{
    /// <summary>The model types whose decoder the reference implements.</summary>
    public static readonly IReadOnlyList<string> SupportedModelTypes = ["qwen3", "llama", "qwen2"];

    /// <summary>q/k/v projections carry biases: always in Qwen2 (hard-coded there), otherwise when attention_bias.</summary>
    public bool HasQkvBias => ModelType == "qwen2" || AttentionBias;

    /// <summary>o_proj carries a bias: Llama and Qwen3 with attention_bias; never in Qwen2.</summary>
    public bool HasOutputBias => ModelType != "qwen2" && AttentionBias;

    /// <summary>Qwen3's per-head RMSNorm of queries and keys before RoPE.</summary>
    public bool HasQkNorm => ModelType == "qwen3";

    /// <summary>Reads and validates <paramref name="path"/>; every error names the file, the field and its value.</summary>
    public static ReferenceConfig Load(string path)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ReferenceCheckpointException(path, "(document)", $"is not valid JSON: {e.Message}");
        }

        if (root is not JsonObject json)
        {
            throw new ReferenceCheckpointException(path, "(document)", "is not a JSON object");
        }

        var fields = new JsonFields(path, json);
        string modelType = fields.RequiredString("model_type");
        if (!SupportedModelTypes.Contains(modelType))
        {
            throw new ReferenceCheckpointException(path, "model_type", $"has value \"{modelType}\"; supported: {string.Join(", ", SupportedModelTypes)}");
        }

        RejectUnsupportedFeatures(fields);

        int vocab = fields.RequiredInt("vocab_size");
        int hidden = fields.RequiredInt("hidden_size");
        int intermediate = fields.RequiredInt("intermediate_size");
        int layers = fields.RequiredInt("num_hidden_layers");
        int heads = fields.RequiredInt("num_attention_heads");
        var config = new ReferenceConfig(
            modelType,
            vocab,
            hidden,
            intermediate,
            layers,
            heads,
            fields.OptionalInt("num_key_value_heads") ?? heads,
            fields.OptionalInt("head_dim") ?? (heads > 0 ? hidden / heads : 0),
            fields.OptionalDouble("rms_norm_eps") ?? 1e-6,
            ReadRopeTheta(fields),
            fields.OptionalBool("tie_word_embeddings") ?? false,
            fields.OptionalBool("attention_bias") ?? false);
        config.Validate(path);
        return config;
    }

    /// <summary>Writes the config in transformers' field names, atomically.</summary>
    public void Save(string path)
    {
        Validate(path);
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(ArchitectureName),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["rope_scaling"] = null,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["torch_dtype"] = "float32",
        };
        if (ModelType != "qwen2")
        {
            // Qwen2Config has no attention_bias field; writing one would suggest it is honoured there.
            json["attention_bias"] = AttentionBias;
        }

        AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(json, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>The transformers class name for "architectures".</summary>
    public string ArchitectureName => ModelType switch
    {
        "qwen3" => "Qwen3ForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        _ => "LlamaForCausalLM",
    };

    /// <summary>Throws <see cref="ReferenceCheckpointException"/> naming <paramref name="file"/> for any inconsistent size.</summary>
    public void Validate(string file)
    {
        RequirePositive(file, "vocab_size", VocabSize);
        RequirePositive(file, "hidden_size", HiddenSize);
        RequirePositive(file, "intermediate_size", IntermediateSize);
        RequirePositive(file, "num_hidden_layers", NumHiddenLayers);
        RequirePositive(file, "num_attention_heads", NumAttentionHeads);
        RequirePositive(file, "num_key_value_heads", NumKeyValueHeads);
        RequirePositive(file, "head_dim", HeadDim);
        if (NumAttentionHeads % NumKeyValueHeads != 0)
        {
            throw new ReferenceCheckpointException(file, "num_key_value_heads", $"has value {NumKeyValueHeads}, which does not divide num_attention_heads = {NumAttentionHeads}");
        }

        if (HeadDim % 2 != 0)
        {
            throw new ReferenceCheckpointException(file, "head_dim", $"has value {HeadDim}; RoPE rotates pairs, so it must be even");
        }

        if (!(RmsNormEps > 0) || !double.IsFinite(RmsNormEps))
        {
            throw new ReferenceCheckpointException(file, "rms_norm_eps", $"has value {RmsNormEps}; it must be finite and positive");
        }

        if (!(RopeTheta > 0) || !double.IsFinite(RopeTheta))
        {
            throw new ReferenceCheckpointException(file, "rope_theta", $"has value {RopeTheta}; it must be finite and positive");
        }
    }

    private static void RequirePositive(string file, string field, int value)
    {
        if (value <= 0)
        {
            throw new ReferenceCheckpointException(file, field, $"has value {value}; it must be positive");
        }
    }

    private static double ReadRopeTheta(JsonFields fields)
    {
        // Newer transformers moves rope_theta into rope_parameters; older configs keep it at top level.
        double? nested = fields.Nested("rope_parameters")?.OptionalDouble("rope_theta");
        return nested ?? fields.OptionalDouble("rope_theta") ?? 10000.0;
    }

    /// <summary>
    /// Features that change the computation but that the reference does not implement: refusing them is better
    /// than an oracle that silently computes something else.
    /// </summary>
    private static void RejectUnsupportedFeatures(JsonFields fields)
    {
        string act = fields.OptionalString("hidden_act") ?? "silu";
        if (act != "silu")
        {
            fields.Fail("hidden_act", $"has value \"{act}\"; only silu (SwiGLU) is implemented");
        }

        if (fields.OptionalBool("mlp_bias") == true)
        {
            fields.Fail("mlp_bias", "has value true; MLP biases are not implemented");
        }

        if (fields.OptionalBool("use_sliding_window") == true)
        {
            fields.Fail("use_sliding_window", "has value true; sliding-window attention is not implemented");
        }

        foreach (var (owner, scaling) in new[] { ("rope_scaling", fields.Nested("rope_scaling")), ("rope_parameters", fields.Nested("rope_parameters")) })
        {
            string? ropeType = scaling?.OptionalString("rope_type") ?? scaling?.OptionalString("type");
            if (ropeType is not null && ropeType != "default")
            {
                fields.Fail($"{owner}.rope_type", $"has value \"{ropeType}\"; only default RoPE is implemented");
            }
        }
    }
}
