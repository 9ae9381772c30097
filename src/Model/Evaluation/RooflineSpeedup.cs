namespace E3.Model.Evaluation;

/// <summary>
/// The speedup from skipping layers when each phase runs at a constant rate of the resource that limits it, with the
/// work that no mask removes counted.
/// <para>
/// <c>L / kept</c> is the ideal only when the layers are all the work. The LM head, the final norm and the embedding
/// rows are read or computed once per call whatever the mask, so a phase that runs at its roofline speeds up by
/// <c>cost(L) / cost(kept)</c>, not <c>L / kept</c>. Each phase is costed by what limits it on a GPU:
/// </para>
/// <list type="bullet">
/// <item>prefill by FLOPs (matrix products): 2·P per token per layer for P projection weights, 4·D per causal
/// (query, key) pair and head for attention, and 2·V·H per sequence for the LM head, which computes the last position
/// only (<see cref="Decoder.LogitsMode.Last"/>);</item>
/// <item>decode by bytes read per step: every kept layer's weights and its KV cache up to the current position, plus
/// the LM head (V·H weights, whether tied or not), the final norm and one embedding row per sequence.</item>
/// </list>
/// <para>
/// For a model whose weights fit no cache (any model worth pruning, on any device) a measured ratio above the
/// roofline would mean the full model was held back by something the pruned one escapes. A model small enough that
/// its pruned weights fit a CPU's last-level cache and its full weights do not can beat it in decode; that is the
/// cache, not the skipping.
/// </para>
/// <para>
/// For the Qwen3-8B shape (36 layers, V = 151,936, an untied head of 1.24 GB in bf16) with 9 layers dropped, the decode
/// roofline is 1.298x, not 1.333x: the head is 8% of the full model's bytes and none of the pruned model's savings.
/// Norms and biases are counted at the weight element size; they are under 0.01% of the bytes.
/// </para>
/// </summary>
public sealed record RooflineSpeedup(double Prefill, double? Decode)
{
    /// <param name="config">The model's shape.</param>
    /// <param name="keptLayers">Layers the pruned model runs.</param>
    /// <param name="batch">Sequences per call.</param>
    /// <param name="prefill">Prompt tokens per sequence.</param>
    /// <param name="decode">Generated tokens per sequence (0: prefill only).</param>
    /// <param name="weightBytes">Bytes per weight element as the backend holds them (2 for bf16, 4 for fp32).</param>
    /// <param name="cacheBytes">Bytes per KV-cache element (the backend's activation type).</param>
    public static RooflineSpeedup For(ModelConfig config, int keptLayers, int batch, int prefill, int decode, int weightBytes, int cacheBytes)
    {
        var c = config;
        if (keptLayers < 1 || keptLayers > c.NumLayers)
            throw new ArgumentOutOfRangeException(nameof(keptLayers), $"kept layers {keptLayers} must be in 1..{c.NumLayers}");
        if (batch < 1 || prefill < 1 || decode < 0)
            throw new ArgumentOutOfRangeException(nameof(batch), $"batch {batch} and prefill {prefill} must be at least 1 and decode {decode} not negative");

        double h = c.HiddenSize, qw = (double)c.NumHeads * c.HeadDim, kvw = (double)c.NumKvHeads * c.HeadDim;
        double projection = h * (qw + 2 * kvw) + qw * h + 3 * h * c.IntermediateSize;
        double layerElements = projection + 2 * h + (c.HasQkNorm ? 2.0 * c.HeadDim : 0)
            + (c.QkvBias ? qw + 2 * kvw : 0) + (c.OutputBias ? h : 0);
        double head = (double)c.VocabSize * h;

        double tokens = (double)batch * prefill, pairs = batch * (double)prefill * (prefill + 1) / 2;
        double layerFlops = 2 * projection * tokens + 4.0 * c.HeadDim * c.NumHeads * pairs;
        double PrefillFlops(int layers) => layers * layerFlops + 2 * head * batch;

        // Step i attends over prefill + i + 1 cached positions (its own included); summed over the decode steps.
        double cachedPositions = decode * (double)prefill + decode * (decode + 1.0) / 2;
        double cacheRead = batch * 2 * kvw * cacheBytes * cachedPositions;
        double fixedPerStep = (head + h + batch * h) * weightBytes;
        double DecodeBytes(int layers) => decode * (layers * layerElements * weightBytes + fixedPerStep) + layers * cacheRead;

        return new RooflineSpeedup(PrefillFlops(c.NumLayers) / PrefillFlops(keptLayers),
            decode == 0 ? null : DecodeBytes(c.NumLayers) / DecodeBytes(keptLayers));
    }
}
