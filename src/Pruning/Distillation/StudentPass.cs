using System.Runtime.Intrinsics;

namespace E3.Pruning.Distillation;

/// <summary>
/// The fused student pass of one logit row: loss terms and the gradient with respect to the student logits,
/// written over the row. Reads per row (dense teacher): pass 1 reads z_s and z_t once (block-online max and
/// sums, each block re-read from L1), pass 2 reads z_s and z_t again and writes the gradient once; together with
/// the teacher pass in <see cref="KdPlan"/> that is z_t three times, z_s twice, one write. Sparse teacher: z_s
/// twice plus K lookups, one write. All sums are fp32 within a block of <see cref="RowMath.Block"/> columns and
/// double across blocks.
/// </summary>
internal static class StudentPass
{
    /// <summary>The row's contributions: τ²·w_t·KL_t/N and CE_t/N (both 0 for invalid rows).</summary>
    public readonly record struct RowLoss(double Kd, double Ce);

    /// <summary>
    /// Replaces <paramref name="row"/> (the student's logits of token <paramref name="t"/>, StudentVocab wide)
    /// by d loss / d logits. <paramref name="teacherScratch"/> widens a bf16 teacher row (Vocab floats, or empty).
    /// </summary>
    public static RowLoss Run(KdPlan plan, int t, Span<float> row, Span<float> teacherScratch)
    {
        if (!plan.Valid[t])
        {
            row.Clear();
            return default;
        }
        row[plan.Vocab..].Clear(); // padding columns are dropped: no loss, no gradient
        var z = row[..plan.Vocab];
        return plan.Teacher is DenseTeacher dense
            ? Dense(plan, t, z, dense.Row(t, teacherScratch)[..plan.Vocab])
            : Sparse(plan, t, z, (SparseTeacher)plan.Teacher);
    }

    private static RowLoss Dense(KdPlan plan, int t, Span<float> z, ReadOnlySpan<float> zt)
    {
        var options = plan.Options;
        float k = (float)(1.0 / options.Temperature);
        bool reverse = options.Direction == KlDirection.Reverse;
        int label = plan.Labels[t];
        bool separateUnit = label >= 0 && k != 1f;
        float tMax = plan.TeacherMax![t];
        double tLogSum = plan.TeacherLogSum![t];

        // Pass 1: S = Σ e^{(z−m)k}; reverse: R = Σ e^u (u − v) (same shift rule as the entropy sum);
        // forward: P = Σ p and Pz = Σ p (z − m); CE with τ ≠ 1: S1 = Σ e^{z−m}.
        var soft = new OnlineSoftmax(k);
        var unit = new OnlineSoftmax(1f);
        double pSum = 0, pz = 0;
        bool finite = true;
        for (int c = 0; c < z.Length; c += RowMath.Block)
        {
            int n = Math.Min(RowMath.Block, z.Length - c);
            var block = z.Slice(c, n);
            var teacherBlock = zt.Slice(c, n);
            float blockMax = RowMath.Max(block, ref finite);
            if (!finite) throw NonFinite(t);
            double rev = 0;
            RowMath.SumExp(block, blockMax, k, separateUnit, out double s, out double s1);
            if (reverse) RowMath.SumReverse(block, teacherBlock, blockMax, k, tMax, out rev);
            else
            {
                RowMath.SumTeacherWeighted(block, teacherBlock, blockMax, k, tMax, (float)tLogSum, out double ps, out double pzb);
                // Pz is kept relative to the running max: re-anchor before merging.
                float newMax = MathF.Max(soft.Max, blockMax);
                if (float.IsFinite(soft.Max)) pz -= ((double)newMax - soft.Max) * pSum;
                pz += pzb + ((double)blockMax - newMax) * ps;
                pSum += ps;
            }
            soft.Merge(blockMax, s, rev);
            if (separateUnit) unit.Merge(blockMax, s1, 0);
        }
        float m = soft.Max;
        double logS = Math.Log(soft.Sum);
        double kl = reverse
            ? soft.Shifted / soft.Sum - logS + tLogSum
            : -plan.Entropy[t] - k * pz + pSum * logS;
        double logS1 = separateUnit ? Math.Log(unit.Sum) : logS;
        double ce = label >= 0 ? logS1 - (z[label] - m) : 0;

        // Pass 2: the gradient, written once.
        float c0 = (float)(plan.KdCoefficient[t] * k), ceCoef = (float)plan.CeCoefficient;
        var mV = Vector256.Create(m);
        var kV = Vector256.Create(k);
        var logSV = Vector256.Create((float)logS);
        var logS1V = Vector256.Create((float)logS1);
        var tMaxV = Vector256.Create(tMax);
        var tLogV = Vector256.Create((float)tLogSum);
        var klV = Vector256.Create((float)kl);
        var cV = Vector256.Create(c0);
        var ceV = Vector256.Create(label >= 0 ? ceCoef : 0f);
        for (int i = 0; i < z.Length; i += 8)
        {
            var d = RowMath.Load(z, i) - mV;
            var u = d * kV - logSV;
            var v = (RowMath.Load(zt, i) - tMaxV) * kV - tLogV;
            var q = Vector256.Exp(u);
            var g = reverse ? cV * q * (u - v - klV) : cV * (q - Vector256.Exp(v));
            if (label >= 0) g += ceV * (separateUnit ? Vector256.Exp(d - logS1V) : q);
            RowMath.Store(g, z, i);
        }
        if (label >= 0) z[label] -= ceCoef;
        return new RowLoss(Scale(plan, t) * kl, label >= 0 ? ce / plan.ValidCount : 0);
    }

    private static RowLoss Sparse(KdPlan plan, int t, Span<float> z, SparseTeacher teacher)
    {
        var options = plan.Options;
        int topK = teacher.K, stride = topK + 1;
        float k = (float)(1.0 / options.Temperature);
        bool reverse = options.Direction == KlDirection.Reverse;
        int label = plan.Labels[t];
        bool separateUnit = label >= 0 && k != 1f;
        var logP = plan.BucketLogProbs.AsSpan(t * stride, stride);
        Span<int> sorted = stackalloc int[topK];
        teacher.Indices.Span.Slice(t * topK, topK).CopyTo(sorted);
        sorted.Sort();
        Span<float> topLogits = stackalloc float[topK];
        var indices = teacher.Indices.Span.Slice(t * topK, topK);

        // Pass 1 over the tail columns only (the segments between the sorted top-K indices), so the tail mass is
        // summed directly instead of as 1 − Σ top-K, which would cancel when the top-K hold nearly everything.
        var tail = new OnlineSoftmax(k);
        var tailUnit = new OnlineSoftmax(1f);
        bool finite = true;
        int start = 0;
        for (int s = 0; s <= topK; s++)
        {
            int end = s < topK ? sorted[s] : z.Length;
            for (int c = start; c < end; c += RowMath.Block)
            {
                var block = z.Slice(c, Math.Min(RowMath.Block, end - c));
                float blockMax = RowMath.Max(block, ref finite);
                if (!finite) throw NonFinite(t);
                RowMath.SumExp(block, blockMax, k, separateUnit, out double sum, out double sum1);
                tail.Merge(blockMax, sum, 0);
                if (separateUnit) tailUnit.Merge(blockMax, sum1, 0);
            }
            start = end + 1;
        }
        float m = tail.Max;
        for (int i = 0; i < topK; i++)
        {
            topLogits[i] = z[indices[i]];
            if (!float.IsFinite(topLogits[i])) throw NonFinite(t);
            m = MathF.Max(m, topLogits[i]);
        }
        double tailSum = tail.Sum > 0 ? tail.Sum * Math.Exp(((double)tail.Max - m) * k) : 0;
        double tailSum1 = tailUnit.Sum > 0 ? tailUnit.Sum * Math.Exp((double)tailUnit.Max - m) : 0;
        double topSum = 0, topSum1 = 0;
        for (int i = 0; i < topK; i++)
        {
            topSum += Math.Exp(((double)topLogits[i] - m) * k);
            topSum1 += Math.Exp((double)topLogits[i] - m);
        }
        double logS = Math.Log(tailSum + topSum);
        double logS1 = separateUnit ? Math.Log(tailSum1 + topSum1) : logS;
        double qTail = tailSum / (tailSum + topSum);
        double logQTail = Math.Log(Math.Max(qTail, KdPlan.TailFloor));
        double pTail = Math.Exp(logP[topK]);
        double logPTail = Math.Max(logP[topK], Math.Log(KdPlan.TailFloor));

        double kl = 0;
        for (int i = 0; i < topK; i++)
        {
            double logQ = ((double)topLogits[i] - m) * k - logS;
            kl += reverse ? Math.Exp(logQ) * (logQ - logP[i]) : Math.Exp(logP[i]) * (logP[i] - logQ);
        }
        if (reverse && qTail > 0) kl += qTail * (logQTail - logPTail);
        if (!reverse && pTail > 0) kl += pTail * (logPTail - logQTail);
        double ce = label >= 0 ? logS1 - (z[label] - m) : 0;

        // Pass 2: every column gets the tail-bucket form c·f·q_j (+ CE); the K top columns are then overwritten.
        double c0 = plan.KdCoefficient[t] * k, ceCoef = plan.CeCoefficient;
        double f = reverse ? logQTail - logPTail - kl : 1 - pTail / Math.Max(qTail, KdPlan.TailFloor);
        var mV = Vector256.Create(m);
        var kV = Vector256.Create(k);
        var logSV = Vector256.Create((float)logS);
        var logS1V = Vector256.Create((float)logS1);
        var cfV = Vector256.Create((float)(c0 * f));
        var ceV = Vector256.Create(label >= 0 ? (float)ceCoef : 0f);
        for (int i = 0; i < z.Length; i += 8)
        {
            var d = RowMath.Load(z, i) - mV;
            var q = Vector256.Exp(d * kV - logSV);
            var g = cfV * q;
            if (label >= 0) g += ceV * (separateUnit ? Vector256.Exp(d - logS1V) : q);
            RowMath.Store(g, z, i);
        }
        for (int i = 0; i < topK; i++)
        {
            double d = (double)topLogits[i] - m;
            double logQ = d * k - logS;
            double q = Math.Exp(logQ);
            double g = reverse ? c0 * q * (logQ - logP[i] - kl) : c0 * (q - Math.Exp(logP[i]));
            if (label >= 0) g += ceCoef * Math.Exp(d - logS1);
            z[indices[i]] = (float)g;
        }
        if (label >= 0) z[label] -= (float)ceCoef;
        return new RowLoss(Scale(plan, t) * kl, label >= 0 ? ce / plan.ValidCount : 0);
    }

    // τ²·w_t/N: the row's KL coefficient in the KD term (KdCoefficient without λ, so λ = 0 still reports KD).
    private static double Scale(KdPlan plan, int t)
    {
        double tau = plan.Options.Temperature;
        return tau * tau * plan.Weights[t] / plan.ValidCount;
    }

    private static ArgumentException NonFinite(int t) =>
        new($"student logits: row {t} holds a NaN or infinite value (set KdOptions.MaskNonFinite to skip such rows)");
}
