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
        // Insertion into a sorted list of K: K is small (about 10) and most logits are rejected by one compare.
        int filled = 0;
        for (int c = 0; c < logits.Length; c++)
        {
            float z = logits[c];
            if (filled == k && !(z > logits[indices[k - 1]])) continue;
            int position = filled < k ? filled++ : k - 1;
            while (position > 0 && z > logits[indices[position - 1]])
            {
                indices[position] = indices[position - 1];
                position--;
            }
            indices[position] = c;
        }
        for (int i = 0; i < k; i++) logProbs[i] = (float)Math.Min(0.0, logits[indices[i]] - lse);
    }
}
