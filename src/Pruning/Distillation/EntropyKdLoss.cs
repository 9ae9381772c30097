using E3.Backends.Numerics;

namespace E3.Pruning.Distillation;

/// <summary>
/// Entropy-weighted KL distillation on the CPU, loss and gradient in one fused pass per row.
/// <para>
/// With p = softmax(z_t/τ) and q = softmax(z_s/τ) over the common vocabulary, KL_t = KL(p‖q) (forward) or
/// KL(q‖p) (reverse), H_t the teacher entropy at τ and w_t from <see cref="EntropyWeighting"/>:
/// L = λ·τ²·Σ_t w_t·KL_t / N + (1 − λ)·Σ_t CE_t / N, N the valid tokens, CE_t = −log softmax(z_s)[label] (τ = 1).
/// w_t is a constant of the backward pass. A sparse teacher is compared on K+1 buckets (the K listed tokens and
/// one tail bucket with the remaining mass, on both sides; see <see cref="SparseTeacher"/>), tempered as
/// p_b ∝ P_b^{1/τ} over the buckets; q's buckets come from the full softmax(z_s/τ).
/// </para>
/// No [T, V] buffer other than the caller's logits is created: they are overwritten by d L / d z_s.
/// </summary>
internal static class EntropyKdLoss
{
    /// <summary>
    /// Loss of fp32 student logits [T, <paramref name="studentVocab"/>]; the logits are replaced by the gradient.
    /// <paramref name="labels"/> has T entries (<see cref="KdOptions.IgnoreIndex"/> for padding) or is empty (λ = 1 only).
    /// </summary>
    public static KdLoss Compute(Span<float> studentLogits, int studentVocab, KdTeacher teacher, ReadOnlySpan<int> labels, KdOptions options)
    {
        var plan = KdPlan.Create(teacher, labels, studentVocab, options);
        CheckStudent(studentLogits.Length, plan);
        if (options.MaskNonFinite) MaskNonFiniteRows(plan, studentLogits);
        return Run(plan, studentLogits, 0, plan.Rows);
    }

    /// <summary>As the fp32 overload for bf16 student logits (raw bits); sums in fp32, the gradient rounded to bf16.</summary>
    public static KdLoss Compute(Span<ushort> studentLogitsBf16, int studentVocab, KdTeacher teacher, ReadOnlySpan<int> labels, KdOptions options)
    {
        var plan = KdPlan.Create(teacher, labels, studentVocab, options);
        CheckStudent(studentLogitsBf16.Length, plan);
        if (options.MaskNonFinite)
        {
            var row = new float[studentVocab];
            for (int t = 0; t < plan.Rows; t++)
            {
                BFloat16.ToSingle(studentLogitsBf16.Slice(t * studentVocab, studentVocab), row);
                if (!AllFinite(row)) plan.Invalidate(t);
            }
            plan.Finish();
        }
        var kd = new double[plan.Rows];
        var ce = new double[plan.Rows];
        unsafe
        {
            fixed (ushort* basePtr = studentLogitsBf16)
            {
                nint address = (nint)basePtr;
                int dense = plan.Teacher is DenseTeacher { IsBf16: true } ? plan.Teacher.Vocab : 0;
                ParallelRows.For(plan.Rows, () => (new float[studentVocab], new float[dense]), (t, scratch) =>
                {
                    var bits = new Span<ushort>((ushort*)address + (long)t * studentVocab, studentVocab);
                    BFloat16.ToSingle(bits, scratch.Item1);
                    (kd[t], ce[t]) = StudentPass.Run(plan, t, scratch.Item1, scratch.Item2);
                    BFloat16.FromSingle(scratch.Item1, bits);
                    return scratch;
                });
            }
        }
        return Total(plan, kd, ce);
    }

    /// <summary>
    /// The student pass over rows [<paramref name="firstRow"/>, firstRow + rows) of a prepared plan; the logits of
    /// those rows lie in <paramref name="chunk"/>. Returns the chunk's share of the loss.
    /// </summary>
    internal static KdLoss Run(KdPlan plan, Span<float> chunk, int firstRow, int rows)
    {
        var kd = new double[rows];
        var ce = new double[rows];
        int width = plan.StudentVocab;
        unsafe
        {
            fixed (float* basePtr = chunk)
            {
                nint address = (nint)basePtr;
                int dense = plan.Teacher is DenseTeacher { IsBf16: true } ? plan.Teacher.Vocab : 0;
                ParallelRows.For(rows, () => new float[dense], (r, scratch) =>
                {
                    var row = new Span<float>((float*)address + (long)r * width, width);
                    (kd[r], ce[r]) = StudentPass.Run(plan, firstRow + r, row, scratch);
                    return scratch;
                });
            }
        }
        return Total(plan, kd, ce);
    }

    // Summed in row order so the result does not depend on thread scheduling.
    private static KdLoss Total(KdPlan plan, double[] kd, double[] ce)
    {
        double kdSum = 0, ceSum = 0;
        for (int i = 0; i < kd.Length; i++)
        {
            kdSum += kd[i];
            ceSum += ce[i];
        }
        double lambda = plan.Options.KdFraction;
        return new KdLoss(lambda * kdSum + (1 - lambda) * ceSum, kdSum, ceSum, plan.ValidCount);
    }

    private static void CheckStudent(int length, KdPlan plan)
    {
        if (length != (long)plan.Rows * plan.StudentVocab)
            throw new ArgumentException($"student logits: {length} values do not form [{plan.Rows}, {plan.StudentVocab}] (teacher rows x student vocab)");
    }

    private static void MaskNonFiniteRows(KdPlan plan, ReadOnlySpan<float> logits)
    {
        for (int t = 0; t < plan.Rows; t++)
            if (!AllFinite(logits.Slice(t * plan.StudentVocab, plan.StudentVocab))) plan.Invalidate(t);
        plan.Finish();
    }

    private static bool AllFinite(ReadOnlySpan<float> row)
    {
        bool finite = true;
        for (int c = 0; c < row.Length && finite; c += RowMath.Block)
            RowMath.Max(row.Slice(c, Math.Min(RowMath.Block, row.Length - c)), ref finite);
        return finite;
    }
}
