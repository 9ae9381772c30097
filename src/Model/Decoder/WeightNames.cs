namespace E3.Model.Decoder;

/// <summary>Tensor names exactly as transformers writes Qwen3, Qwen2 and Llama checkpoints.</summary>
internal static class WeightNames
{
    public const string Embedding = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";
    public const string LmHead = "lm_head.weight";

    public static string Layer(int i, string suffix) => $"model.layers.{i}.{suffix}";

    /// <summary>The decoder layer a tensor name belongs to ("model.layers.{i}.…"), or null for the embedding, final norm and head.</summary>
    public static int? LayerOf(string name)
    {
        const string prefix = "model.layers.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return null;
        int end = name.IndexOf('.', prefix.Length);
        return end > prefix.Length && int.TryParse(name.AsSpan(prefix.Length, end - prefix.Length), System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out int layer) ? layer : null;
    }
    /// <summary>
    /// Whether <paramref name="name"/> is a layer's projection bias (attention or MLP) or q/k norm: tensors some
    /// architectures have and others lack, so that one present but not expected means the config is for another model.
    /// </summary>
    public static bool IsArchitectureSpecific(string name) =>
        LayerOf(name) != null && (name.EndsWith("_proj.bias", StringComparison.Ordinal)
            || name.EndsWith("." + QNorm, StringComparison.Ordinal) || name.EndsWith("." + KNorm, StringComparison.Ordinal));

    public const string InputNorm = "input_layernorm.weight";
    public const string PostAttentionNorm = "post_attention_layernorm.weight";
    public const string QProj = "self_attn.q_proj";
    public const string KProj = "self_attn.k_proj";
    public const string VProj = "self_attn.v_proj";
    public const string OProj = "self_attn.o_proj";
    public const string QNorm = "self_attn.q_norm.weight";
    public const string KNorm = "self_attn.k_norm.weight";
    public const string GateProj = "mlp.gate_proj";
    public const string UpProj = "mlp.up_proj";
    public const string DownProj = "mlp.down_proj";

    /// <summary>Every tensor a model with this config must hold, with its shape.</summary>
    public static IEnumerable<(string Name, long[] Shape)> Expected(ModelConfig c)
    {
        long h = c.HiddenSize, q = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKvHeads * c.HeadDim, inter = c.IntermediateSize;
        yield return (Embedding, [c.VocabSize, h]);
        for (int i = 0; i < c.NumLayers; i++)
        {
            yield return (Layer(i, InputNorm), [h]);
            yield return (Layer(i, QProj + ".weight"), [q, h]);
            yield return (Layer(i, KProj + ".weight"), [kv, h]);
            yield return (Layer(i, VProj + ".weight"), [kv, h]);
            if (c.QkvBias)
            {
                yield return (Layer(i, QProj + ".bias"), [q]);
                yield return (Layer(i, KProj + ".bias"), [kv]);
                yield return (Layer(i, VProj + ".bias"), [kv]);
            }
            yield return (Layer(i, OProj + ".weight"), [h, q]);
            if (c.OutputBias) yield return (Layer(i, OProj + ".bias"), [h]);
            if (c.HasQkNorm)
            {
                yield return (Layer(i, QNorm), [c.HeadDim]);
                yield return (Layer(i, KNorm), [c.HeadDim]);
            }
            yield return (Layer(i, PostAttentionNorm), [h]);
            yield return (Layer(i, GateProj + ".weight"), [inter, h]);
            yield return (Layer(i, UpProj + ".weight"), [inter, h]);
            yield return (Layer(i, DownProj + ".weight"), [h, inter]);
        }
        yield return (FinalNorm, [h]);
        if (!c.TieWordEmbeddings) yield return (LmHead, [c.VocabSize, h]);
    }
}
