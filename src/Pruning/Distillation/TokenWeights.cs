namespace E3.Pruning.Distillation;

/// <summary>Entropy-aware token weights w_t (see <see cref="EntropyWeighting"/>), zero for invalid tokens.</summary>
internal static class TokenWeights
{
    /// <summary>
    /// Weights from the teacher entropies of the valid tokens; the clamp of <paramref name="options"/> is applied
    /// last. Invalid tokens get 0.
    /// </summary>
    public static double[] Compute(ReadOnlySpan<double> entropy, ReadOnlySpan<bool> valid, KdOptions options)
    {
        if (entropy.Length != valid.Length) throw new ArgumentException($"{entropy.Length} entropies for {valid.Length} tokens");
        var weights = new double[entropy.Length];
        int n = 0;
        double sum = 0, max = double.NegativeInfinity;
        for (int t = 0; t < entropy.Length; t++)
        {
            if (!valid[t]) continue;
            n++;
            sum += entropy[t];
            max = Math.Max(max, entropy[t] / options.SoftmaxBeta);
        }
        if (n == 0) return weights;
        double softmaxSum = 0;
        if (options.Weighting == EntropyWeighting.Softmax)
            for (int t = 0; t < entropy.Length; t++)
                if (valid[t]) softmaxSum += Math.Exp(entropy[t] / options.SoftmaxBeta - max);
        double mean = sum / n;
        for (int t = 0; t < entropy.Length; t++)
        {
            if (!valid[t]) continue;
            double w = options.Weighting switch
            {
                // All-zero entropies (one-hot teachers) have no scale to normalise by: every token counts the same.
                EntropyWeighting.Linear => mean > 0 ? entropy[t] / mean : 1.0,
                EntropyWeighting.Softmax => n * Math.Exp(entropy[t] / options.SoftmaxBeta - max) / softmaxSum,
                _ => 1.0,
            };
            if (options.MinWeight is { } lo) w = Math.Max(w, lo);
            if (options.MaxWeight is { } hi) w = Math.Min(w, hi);
            weights[t] = w;
        }
        return weights;
    }
}
