using E3.Backends;

namespace E3.Pruning.Distillation;

/// <summary>
/// The distillation loss fused with the LM head (as <see cref="EntropyKdLmHead"/> computes it on the host) run by an
/// <see cref="IDistillationBackend"/> where the hidden states and the head live. The host keeps only what needs every
/// row: the token weights, from the teacher's per-row entropies. A step moves O(rows) values to and from the backend
/// instead of the head (V·H), the hidden states and the logits.
/// </summary>
internal static class BackendKdLmHead
{
    /// <summary>
    /// The loss of the student whose head input is <paramref name="hidden"/> [T, H] and head <paramref name="lmHead"/> [V, H].
    /// <paramref name="dHidden"/> is overwritten with dL/dhidden; <paramref name="dLmHead"/>, when given, has the head's
    /// gradient added to it. Teacher logits the backend can read where they are (<see cref="IDistillationBackend.Reads"/>)
    /// stay there; those on the host or on another device are uploaded for the step.
    /// </summary>
    public static LmHeadKdResult Compute(IDistillationBackend backend, Tensor hidden, Tensor lmHead, KdTeacher teacher, ReadOnlySpan<int> labels,
        KdOptions options, Tensor dHidden, Tensor? dLmHead, long memoryBudgetBytes)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(lmHead);
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        int studentVocab = checked((int)lmHead.Rows);
        if (hidden.Rows != teacher.Rows)
            throw new ArgumentException($"hidden {hidden} has {hidden.Rows} rows; the teacher has {teacher.Rows}");
        Tensor? uploaded = null;
        try
        {
            KdPlan plan;
            KdHeadTeacher side;
            switch (teacher)
            {
                case SparseTeacher sparse:
                    plan = KdPlan.Create(sparse, labels, studentVocab, options);
                    side = new SparseKdHeadTeacher(sparse.Indices.ToArray(), Array.ConvertAll(plan.BucketLogProbs!, v => (float)v), sparse.K, plan.Vocab);
                    break;
                case BackendDenseTeacher onBackend when backend.Reads(onBackend.Logits):
                    // On this backend, or on a sibling of the same device (the bf16 teacher beside an fp32 trainer): read
                    // where they are, so the [T, V] logits neither cross to the host nor get an fp32 copy.
                    (plan, side) = Dense(backend, onBackend, onBackend.Logits, labels, studentVocab, options);
                    break;
                default:
                    var host = teacher switch
                    {
                        DenseTeacher d => d,
                        BackendDenseTeacher other => other.ToHost(),
                        _ => throw new ArgumentException($"unknown teacher type {teacher.GetType().Name}"),
                    };
                    uploaded = Upload(backend, host);
                    (plan, side) = Dense(backend, host, uploaded, labels, studentVocab, options);
                    break;
            }
            var rows = Settings(plan);
            var kl = new float[plan.Rows];
            var ce = new float[plan.Rows];
            var chunking = backend.KdLmHead(hidden, lmHead, side, rows, dHidden, dLmHead, memoryBudgetBytes, kl, ce);
            return new LmHeadKdResult(Total(plan, kl, ce), chunking.ChunkRows, chunking.ChunkBytes);
        }
        finally
        {
            uploaded?.Dispose();
        }
    }

    static (KdPlan, KdHeadTeacher) Dense(IDistillationBackend backend, KdTeacher teacher, Tensor logits, ReadOnlySpan<int> labels, int studentVocab, KdOptions options)
    {
        int rows = teacher.Rows, vocab = KdPlan.CommonVocab(teacher.Vocab, studentVocab, options.MaxPaddingColumns);
        var max = new float[rows];
        var logSum = new float[rows];
        var entropy = new float[rows];
        backend.KdTeacherStatistics(logits, vocab, (float)(1 / options.Temperature), max, logSum, entropy);
        var plan = KdPlan.FromStatistics(teacher, labels, studentVocab, options, max, logSum, entropy);
        return (plan, new DenseKdHeadTeacher(logits, vocab, max, logSum, entropy));
    }

    static Tensor Upload(IBackend backend, DenseTeacher teacher)
    {
        var tensor = backend.Allocate(DType.F32, teacher.Rows, teacher.Vocab);
        try
        {
            if (teacher.IsBf16)
            {
                var values = new float[tensor.ElementCount];
                E3.Backends.Numerics.BFloat16.ToSingle(teacher.BFloat16Bits.Span, values);
                backend.Upload(values, tensor);
            }
            else backend.Upload(teacher.Float32.Span, tensor);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>The coefficients and label codes the backend's student pass takes (−2 marks a row that takes no part).</summary>
    static KdHeadRows Settings(KdPlan plan)
    {
        var coefficients = new float[plan.Rows];
        var labels = new int[plan.Rows];
        for (int t = 0; t < plan.Rows; t++)
        {
            coefficients[t] = (float)plan.KdCoefficient[t];
            labels[t] = plan.Valid[t] ? plan.Labels[t] : -2;
        }
        var o = plan.Options;
        return new KdHeadRows(coefficients, labels, (float)plan.CeCoefficient, (float)(1 / o.Temperature), o.Direction == KlDirection.Reverse);
    }

    /// <summary>KD = τ²·Σ w_t·KL_t / N and CE = Σ CE_t / N, summed in double in row order.</summary>
    static KdLoss Total(KdPlan plan, float[] kl, float[] ce)
    {
        double tau2 = plan.Options.Temperature * plan.Options.Temperature, kd = 0, crossEntropy = 0;
        int n = plan.ValidCount;
        for (int t = 0; t < plan.Rows; t++)
        {
            if (!plan.Valid[t]) continue;
            // A NaN or infinite student logit makes its row's sums non-finite; the host pass names the same row.
            if (!float.IsFinite(kl[t]) || !float.IsFinite(ce[t]))
                throw new ArgumentException($"student logits: row {t} holds a NaN or infinite value (the fused LM-head loss cannot skip such rows)");
            kd += tau2 * plan.Weights[t] * kl[t] / n;
            if (plan.Labels[t] >= 0) crossEntropy += (double)ce[t] / n;
        }
        double lambda = plan.Options.KdFraction;
        return new KdLoss(lambda * kd + (1 - lambda) * crossEntropy, kd, crossEntropy, n);
    }
}
