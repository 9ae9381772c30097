using E3.Interop.Kernels;

namespace E3.Backends.Numerics;

/// <summary>
/// The next-token rule of kernels/sampling.cu (<c>e3_sample_*</c>) on the host, expression for expression, so a seed
/// draws the same token on the CPU backend as on a GPU (up to the last bit of a GPU's expf and log):
/// z = x · (1/temperature) in fp32; candidates are the whole row, or the K best z (larger first, NaN above every number,
/// lower index on ties) cut to the shortest prefix whose weights expf(z_j − z_0), summed in order in fp32, reach top_p of
/// their total; the token is the candidate with the largest (double)z + Gumbel noise of (seed, step, row, index), which
/// draws exactly the softmax of z restricted to the candidates.
/// </summary>
internal static class TokenSampler
{
    /// <summary>The token drawn from <paramref name="row"/>, the <paramref name="rowIndex"/>-th row of its call.</summary>
    public static int Sample(ReadOnlySpan<float> row, in SamplingSettings settings, int rowIndex)
    {
        settings.Validate();
        if (row.IsEmpty) throw new ArgumentException("an empty logits row has no token to draw", nameof(row));
        float inverseTemperature = 1f / settings.Temperature;
        ulong seed = settings.Seed;
        long step = settings.Step;
        if (settings.TopK == 0 && !(settings.TopP < 1f))
        {
            double best = double.NegativeInfinity;
            int token = int.MaxValue;
            for (int i = 0; i < row.Length; i++)
            {
                double score = (double)(row[i] * inverseTemperature) + GumbelNoise.Sample(seed, step, rowIndex, i);
                if (RowOrder.Before(score, i, best, token)) (best, token) = (score, i);
            }
            return token;
        }

        int k = Math.Min(settings.TopK == 0 ? SamplingKernels.MaxTopK : settings.TopK, row.Length);
        Span<int> index = stackalloc int[k];
        RowOrder.TopK(row, inverseTemperature, index);
        Span<float> z = stackalloc float[k];
        for (int j = 0; j < k; j++) z[j] = row[index[j]] * inverseTemperature;

        int kept = k;
        if (settings.TopP < 1f)
        {
            float total = 0f;
            for (int j = 0; j < k; j++) total += MathF.Exp(z[j] - z[0]);
            float target = settings.TopP * total, sum = 0f;
            for (int j = 0; j < k; j++)
            {
                sum += MathF.Exp(z[j] - z[0]);
                if (sum >= target)
                {
                    kept = j + 1;
                    break;
                }
            }
        }
        double bestScore = double.NegativeInfinity;
        int chosen = int.MaxValue;
        for (int j = 0; j < kept; j++)
        {
            double score = (double)z[j] + GumbelNoise.Sample(seed, step, rowIndex, index[j]);
            if (RowOrder.Before(score, index[j], bestScore, chosen)) (bestScore, chosen) = (score, index[j]);
        }
        return chosen;
    }
}
