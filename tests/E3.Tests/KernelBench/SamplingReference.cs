using E3.Backends.Numerics;
using E3.Pruning.Masking;

namespace E3.Tests.KernelBench;

/// <summary>
/// The token choice rule of kernels/sampling.cu written out in C#, scalar and sequential: a sort for top-k, a running
/// fp32 sum for top-p, and the Gumbel noise from <see cref="GumbelNoise"/> (the same Philox stream).
/// </summary>
internal static class SamplingReference
{
    /// <summary>Whether (a, ia) comes first: larger value, NaN above every number, lower index on ties.</summary>
    public static bool Before(double a, int ia, double b, int ib)
    {
        bool nanA = double.IsNaN(a), nanB = double.IsNaN(b);
        if (nanA || nanB) return nanA && (!nanB || ia < ib);
        return a > b || (a == b && ia < ib);
    }

    public static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++)
            if (Before(row[i], i, row[best], best)) best = i;
        return best;
    }

    public static int Sample(ReadOnlySpan<float> row, float inverseTemperature, int topK, float topP, ulong seed, long step, int rowIndex)
    {
        var z = new float[row.Length];
        for (int i = 0; i < row.Length; i++) z[i] = row[i] * inverseTemperature;
        int[] candidates;
        if (topK == 0 && !(topP < 1f))
            candidates = Enumerable.Range(0, row.Length).ToArray();
        else
        {
            int k = Math.Min(topK == 0 ? 64 : topK, row.Length);
            var order = Enumerable.Range(0, row.Length).ToArray();
            Array.Sort(order, (a, b) => a == b ? 0 : Before(z[a], a, z[b], b) ? -1 : 1);
            candidates = order[..k];
            if (topP < 1f)
            {
                float total = 0f;
                foreach (int c in candidates) total += MathF.Exp(z[c] - z[candidates[0]]);
                float target = topP * total, sum = 0f;
                int kept = k;
                for (int j = 0; j < k; j++)
                {
                    sum += MathF.Exp(z[candidates[j]] - z[candidates[0]]);
                    if (sum >= target) { kept = j + 1; break; }
                }
                candidates = candidates[..kept];
            }
        }
        int token = -1;
        double best = double.NegativeInfinity;
        foreach (int c in candidates)
        {
            double score = z[c] + GumbelNoise.Sample(seed, step, rowIndex, c);
            if (token < 0 || Before(score, c, best, token)) (best, token) = (score, c);
        }
        return token;
    }
}
