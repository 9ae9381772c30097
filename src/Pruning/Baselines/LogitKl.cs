namespace E3.Pruning.Baselines;

/// <summary>KL(p‖q) between two rows of logits, with both log-softmaxes taken in double.</summary>
internal static class LogitKl
{
    /// <summary>Σ over rows of Σ_v p_v·(log p_v − log q_v), p = softmax(teacher row), q = softmax(student row).</summary>
    public static double SumOverRows(ReadOnlySpan<float> teacher, ReadOnlySpan<float> student, int vocab)
    {
        if (teacher.Length != student.Length || teacher.Length % vocab != 0)
            throw new ArgumentException($"logits of {teacher.Length} and {student.Length} values are not rows of the same {vocab}-word vocabulary");
        double total = 0;
        for (int r = 0; r < teacher.Length; r += vocab)
        {
            var p = teacher.Slice(r, vocab);
            var q = student.Slice(r, vocab);
            double logZp = LogSumExp(p), logZq = LogSumExp(q);
            double kl = 0;
            for (int v = 0; v < vocab; v++)
            {
                double logP = p[v] - logZp;
                kl += Math.Exp(logP) * (logP - (q[v] - logZq));
            }
            total += kl;
        }
        return total;
    }

    static double LogSumExp(ReadOnlySpan<float> row)
    {
        double max = double.NegativeInfinity;
        foreach (float x in row) max = Math.Max(max, x);
        double sum = 0;
        foreach (float x in row) sum += Math.Exp(x - max);
        return max + Math.Log(sum);
    }
}
