using E3.Pruning.Distillation;

namespace E3.Tests.Distillation;

/// <summary>Seeded logits and labels for the loss tests, plus the error measures they share.</summary>
internal static class KdTestData
{
    /// <summary>Gaussian logits with standard deviation <paramref name="scale"/> (Box–Muller, seeded).</summary>
    public static float[] Logits(int count, int seed, double scale = 3.0)
    {
        var random = new Random(seed);
        var x = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            x[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return x;
    }

    /// <summary>Labels in [0, vocab) with every <paramref name="ignoreEvery"/>-th token set to ignore_index (0: none).</summary>
    public static int[] Labels(int rows, int vocab, int seed, int ignoreEvery, int ignoreIndex = -100)
    {
        var random = new Random(seed);
        var labels = new int[rows];
        for (int t = 0; t < rows; t++)
            labels[t] = ignoreEvery > 0 && t % ignoreEvery == ignoreEvery - 1 ? ignoreIndex : random.Next(vocab);
        return labels;
    }

    /// <summary>
    /// A teacher's top-K as the cache stores it: indices and fp32 full-vocabulary log-probabilities (τ = 1),
    /// computed in double from dense logits.
    /// </summary>
    public static (int[] Indices, float[] LogProbs) TopK(float[] logits, int rows, int vocab, int k)
    {
        var indices = new int[rows * k];
        var logProbs = new float[rows * k];
        for (int t = 0; t < rows; t++)
        {
            var row = logits.AsMemory(t * vocab, vocab).ToArray();
            double max = double.NegativeInfinity;
            foreach (float z in row) max = Math.Max(max, z);
            double sum = 0;
            foreach (float z in row) sum += Math.Exp(z - max);
            double lse = max + Math.Log(sum);
            var order = Enumerable.Range(0, vocab).OrderByDescending(c => row[c]).ThenBy(c => c).Take(k).ToArray();
            for (int i = 0; i < k; i++)
            {
                indices[t * k + i] = order[i];
                logProbs[t * k + i] = (float)(row[order[i]] - lse);
            }
        }
        return (indices, logProbs);
    }

    /// <summary>max |got − want| / max |want| (the infinity-norm relative error; an all-zero reference gives the absolute error).</summary>
    public static double RelativeError(ReadOnlySpan<float> got, ReadOnlySpan<float> want)
    {
        double diff = 0, scale = 0;
        for (int i = 0; i < want.Length; i++)
        {
            diff = Math.Max(diff, Math.Abs((double)got[i] - want[i]));
            scale = Math.Max(scale, Math.Abs((double)want[i]));
        }
        return scale > 0 ? diff / scale : diff;
    }

    public static double RelativeError(double got, double want) =>
        want != 0 ? Math.Abs(got - want) / Math.Abs(want) : Math.Abs(got);
}
