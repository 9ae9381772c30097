namespace E3.Tests.Reference;

/// <summary>What a stored tensor is, which decides how random test weights are drawn for it.</summary>
public enum ReferenceTensorKind
{
    /// <summary>Embedding, projection or bias: drawn around zero.</summary>
    Projection,

    /// <summary>An RMSNorm scale: drawn around one.</summary>
    NormScale,
}

/// <summary>One tensor that a transformers checkpoint of the given config holds.</summary>
/// <param name="Name">The exact transformers state-dict name.</param>
/// <param name="Shape">Its shape, PyTorch order (Linear weights are [out, in]).</param>
/// <param name="Kind">Whether it is a norm scale.</param>
public sealed record ReferenceTensorSpec(string Name, long[] Shape, ReferenceTensorKind Kind);

/// <summary>The exact tensor names and shapes transformers' Qwen3/Llama/Qwen2 ForCausalLM state dicts use.</summary>
public static class ReferenceLayout
{
    /// <summary>Name of a per-layer tensor, e.g. Layer(3, "mlp.up_proj.weight").</summary>
    public static string Layer(int layer, string suffix) => $"model.layers.{layer}.{suffix}";

    /// <summary>Every tensor the model needs, in state-dict order; lm_head is absent when embeddings are tied.</summary>
    public static IReadOnlyList<ReferenceTensorSpec> Expected(ReferenceConfig config)
    {
        long hidden = config.HiddenSize;
        long queryWidth = (long)config.NumAttentionHeads * config.HeadDim;
        long keyValueWidth = (long)config.NumKeyValueHeads * config.HeadDim;
        var specs = new List<ReferenceTensorSpec> { Weight("model.embed_tokens.weight", config.VocabSize, hidden) };
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            specs.Add(Norm(Layer(i, "input_layernorm.weight"), hidden));
            AddProjection(specs, Layer(i, "self_attn.q_proj"), queryWidth, hidden, config.HasQkvBias);
            AddProjection(specs, Layer(i, "self_attn.k_proj"), keyValueWidth, hidden, config.HasQkvBias);
            AddProjection(specs, Layer(i, "self_attn.v_proj"), keyValueWidth, hidden, config.HasQkvBias);
            AddProjection(specs, Layer(i, "self_attn.o_proj"), hidden, queryWidth, config.HasOutputBias);
            if (config.HasQkNorm)
            {
                specs.Add(Norm(Layer(i, "self_attn.q_norm.weight"), config.HeadDim));
                specs.Add(Norm(Layer(i, "self_attn.k_norm.weight"), config.HeadDim));
            }

            specs.Add(Norm(Layer(i, "post_attention_layernorm.weight"), hidden));
            AddProjection(specs, Layer(i, "mlp.gate_proj"), config.IntermediateSize, hidden, bias: false);
            AddProjection(specs, Layer(i, "mlp.up_proj"), config.IntermediateSize, hidden, bias: false);
            AddProjection(specs, Layer(i, "mlp.down_proj"), hidden, config.IntermediateSize, bias: false);
        }

        specs.Add(Norm("model.norm.weight", hidden));
        if (!config.TieWordEmbeddings)
        {
            specs.Add(Weight("lm_head.weight", config.VocabSize, hidden));
        }

        return specs;
    }

    private static void AddProjection(List<ReferenceTensorSpec> specs, string prefix, long outFeatures, long inFeatures, bool bias)
    {
        specs.Add(Weight($"{prefix}.weight", outFeatures, inFeatures));
        if (bias)
        {
            specs.Add(new ReferenceTensorSpec($"{prefix}.bias", [outFeatures], ReferenceTensorKind.Projection));
        }
    }

    private static ReferenceTensorSpec Weight(string name, long rows, long columns) => new(name, [rows, columns], ReferenceTensorKind.Projection);

    private static ReferenceTensorSpec Norm(string name, long width) => new(name, [width], ReferenceTensorKind.NormScale);
}
