using System.Text.Json.Nodes;

namespace E3.Pruning.Export;

/// <summary>The config.json of a pruned checkpoint: the source JSON with only the per-layer fields rewritten.</summary>
internal static class PrunedConfig
{
    /// <summary>
    /// A copy of <paramref name="source"/> in which <c>num_hidden_layers</c> is the kept count, <c>layer_types</c>
    /// (when present) lists the kept layers' types in order, and <c>max_window_layers</c> (when present) is the
    /// number of kept layers whose old index is below the old value. Every other field, <c>use_sliding_window</c>
    /// included, is kept verbatim, in its original order.
    /// </summary>
    /// <remarks>
    /// Qwen2/Qwen3 apply sliding-window attention to layers at index ≥ max_window_layers (when use_sliding_window
    /// is on). Counting the kept layers below the old boundary keeps that boundary between the same layers after
    /// renumbering, so every kept layer keeps the attention kind it was trained with.
    /// </remarks>
    public static JsonObject Rewrite(JsonObject source, IReadOnlyList<int> kept)
    {
        var config = (JsonObject)source.DeepClone();
        config["num_hidden_layers"] = kept.Count;
        if (config["layer_types"] is JsonArray types)
            config["layer_types"] = new JsonArray(kept.Select(i => types[i]?.DeepClone()).ToArray());
        if (config["max_window_layers"] is JsonValue window && window.TryGetValue(out int oldBoundary))
            config["max_window_layers"] = kept.Count(i => i < oldBoundary);
        return config;
    }
}
