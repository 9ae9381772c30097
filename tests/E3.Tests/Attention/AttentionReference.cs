namespace E3.Tests.Attention;

/// <summary>What one attention call must produce, computed in double precision by direct enumeration.</summary>
internal sealed class AttentionReference
{
    public AttentionReference(AttentionProblem problem)
    {
        var c = problem.Case;
        var layout = problem.Layout;
        int d = c.HeadDim, kvw = problem.KvWidth, qw = problem.QueryWidth, group = c.Heads / c.KvHeads;

        KCache = (float[])problem.KCache.Clone();
        VCache = (float[])problem.VCache.Clone();
        for (int b = 0; b < c.Batch; b++)
        {
            Array.Copy(problem.K, b * c.Tokens * kvw, KCache, (b * layout.Capacity + c.Start) * kvw, c.Tokens * kvw);
            Array.Copy(problem.V, b * c.Tokens * kvw, VCache, (b * layout.Capacity + c.Start) * kvw, c.Tokens * kvw);
        }

        int rows = c.Batch * c.Tokens;
        Output = new double[rows * qw];
        Max = new double[rows * c.Heads];
        LogSumExp = new double[rows * c.Heads];
        ValueScale = new double[rows * c.Heads];
        DotMagnitude = new double[rows * c.Heads];
        for (int b = 0; b < c.Batch; b++)
            for (int t = 0; t < c.Tokens; t++)
                for (int h = 0; h < c.Heads; h++)
                {
                    int row = b * c.Tokens + t, item = row * c.Heads + h;
                    int keys = c.Start + t + 1;
                    int kvBase = b * layout.Capacity * kvw + h / group * d;
                    var scores = new double[keys];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < keys; j++)
                    {
                        double dot = 0, magnitude = 0;
                        for (int i = 0; i < d; i++)
                        {
                            double product = (double)problem.Q[row * qw + h * d + i] * KCache[kvBase + j * kvw + i];
                            dot += product;
                            magnitude += Math.Abs(product);
                        }
                        scores[j] = layout.Scale * dot;
                        max = Math.Max(max, scores[j]);
                        DotMagnitude[item] = Math.Max(DotMagnitude[item], layout.Scale * magnitude);
                    }
                    double sum = 0;
                    for (int j = 0; j < keys; j++)
                    {
                        scores[j] = Math.Exp(scores[j] - max);
                        sum += scores[j];
                    }
                    for (int j = 0; j < keys; j++)
                        for (int i = 0; i < d; i++)
                        {
                            double value = VCache[kvBase + j * kvw + i];
                            Output[row * qw + h * d + i] += scores[j] / sum * value;
                            ValueScale[item] = Math.Max(ValueScale[item], Math.Abs(value));
                        }
                    Max[item] = max;
                    LogSumExp[item] = max + Math.Log(sum);
                }
    }

    /// <summary>[B*T, heads*D].</summary>
    public double[] Output { get; }

    /// <summary>Per (row, head): the max of the scaled scores.</summary>
    public double[] Max { get; }

    /// <summary>Per (row, head): log of the sum of exp(scaled scores).</summary>
    public double[] LogSumExp { get; }

    /// <summary>Per (row, head): the largest |v| among the keys the row sees; the output is a convex combination of them.</summary>
    public double[] ValueScale { get; }

    /// <summary>Per (row, head): the largest scale * sum |q_i k_i| over its keys, which bounds fp32 rounding in a score.</summary>
    public double[] DotMagnitude { get; }

    /// <summary>The caches after the call: the new rows at Start.., everything else untouched.</summary>
    public float[] KCache { get; }

    public float[] VCache { get; }
}
