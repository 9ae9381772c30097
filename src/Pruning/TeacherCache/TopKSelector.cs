using E3.Backends.Numerics;

namespace E3.Pruning.TeacherCache;

/// <summary>The K largest logits of a row and their full-vocabulary log-probabilities (log-softmax at τ = 1).</summary>
internal static class TopKSelector
{
    /// <summary>
    /// Fills <paramref name="indices"/> and <paramref name="logProbs"/> (length K each) in descending order of
    /// logit, ties broken by the lower index, so the result is a pure function of the row.
    /// </summary>
    public static void Select(ReadOnlySpan<float> logits, Span<int> indices, Span<float> logProbs)
    {
        int k = indices.Length;
        if (k < 1 || k > logits.Length || logProbs.Length != k)
            throw new ArgumentException($"top-{k} of a row of {logits.Length} logits into {logProbs.Length} log-probabilities");
        double max = double.NegativeInfinity;
        foreach (float z in logits)
        {
            if (!float.IsFinite(z)) throw new ArgumentException($"logit {z} is not finite; the teacher produced NaN or infinity");
            max = Math.Max(max, z);
        }
        double sum = 0;
        foreach (float z in logits) sum += Math.Exp(z - max);
        double lse = max + Math.Log(sum);
        // Every logit is finite here, so the sampling kernels' order is plain descending value, ties to the lower index.
        RowOrder.TopK(logits, 1f, indices);
        for (int i = 0; i < k; i++) logProbs[i] = (float)Math.Min(0.0, logits[indices[i]] - lse);
    }
}
