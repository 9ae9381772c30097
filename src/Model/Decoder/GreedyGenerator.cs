namespace E3.Model.Decoder;

/// <summary>
/// Decoding with the KV cache: one prefill, then one position per new token, each the most likely one or, with
/// <see cref="SamplingOptions"/>, drawn. A backend that can reduces or draws on the device, so a GPU step downloads one
/// int, not a vocabulary row.
/// </summary>
public static class Generator
{
    /// <summary>
    /// Returns the generated ids (not the prompt), stopping after <paramref name="maxNew"/> or at <paramref name="eos"/>
    /// (which is returned).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="prompt">The prompt's ids.</param>
    /// <param name="maxNew">Most tokens to generate.</param>
    /// <param name="sampling">How to draw each token; null takes the most likely (greedy, ties to the lowest id).</param>
    /// <param name="mask">The layers to run; null runs them all.</param>
    /// <param name="eos">The end-of-sequence id, or null to always generate <paramref name="maxNew"/>.</param>
    public static int[] Generate(DecoderModel model, ReadOnlySpan<int> prompt, int maxNew, SamplingOptions? sampling = null, LayerMask? mask = null, int? eos = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (prompt.Length == 0) throw new ArgumentException("the prompt is empty", nameof(prompt));
        if (maxNew < 0) throw new ArgumentOutOfRangeException(nameof(maxNew), $"max new tokens {maxNew} must not be negative");
        sampling?.At(0).Validate();
        if (maxNew == 0) return [];
        var output = new List<int>(maxNew);
        using var session = model.StartSession(mask ?? LayerMask.All(model.Config.NumLayers), 1, prompt.Length + maxNew);
        int next = Next(session, prompt, sampling);
        while (true)
        {
            output.Add(next);
            if (output.Count == maxNew || next == eos) break;
            next = Next(session, [next], sampling);
        }
        return output.ToArray();
    }

    static int Next(InferenceSession session, ReadOnlySpan<int> tokens, SamplingOptions? sampling) =>
        sampling is null ? session.ForwardArgMax(tokens)[0] : session.ForwardSample(tokens, sampling)[0];
}

/// <summary>Greedy decoding with the KV cache: one prefill, then one position per new token.</summary>
public static class GreedyGenerator
{
    /// <summary>Returns the generated ids (not the prompt), stopping after <paramref name="maxNew"/> or at <paramref name="eos"/>.</summary>
    public static int[] Generate(DecoderModel model, ReadOnlySpan<int> prompt, int maxNew, LayerMask? mask = null, int? eos = null) =>
        Generator.Generate(model, prompt, maxNew, sampling: null, mask, eos);

    /// <summary>
    /// Index of the largest value; the lowest index wins ties, and NaN counts as larger than every number, as in
    /// torch.argmax (a row holding NaN yields its first NaN). The device's argmax kernel ranks the same way, so a session
    /// gives the same ids on every backend for the same logits.
    /// </summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        // RowOrder's rank, in one pass: the first NaN ends the search; among numbers a strict > keeps the lower index.
        int best = 0;
        float bestValue = values[0];
        if (float.IsNaN(bestValue)) return 0;
        for (int i = 1; i < values.Length; i++)
        {
            float v = values[i];
            if (v > bestValue)
            {
                best = i;
                bestValue = v;
            }
            else if (float.IsNaN(v)) return i;
        }
        return best;
    }
}
