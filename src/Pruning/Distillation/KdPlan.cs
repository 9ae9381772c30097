namespace E3.Pruning.Distillation;

/// <summary>
/// The result of the teacher-side pass, which must finish before any student row is processed because the
/// weights w_t depend on every token (mean of H over valid tokens). Holds, per token: validity, the teacher's
/// log-normaliser (dense) or its K+1 tempered bucket log-probabilities (sparse), H_t, w_t and the loss
/// coefficients. Reused by every chunk of the LM-head loop and by the GPU path.
/// </summary>
internal sealed class KdPlan
{
    /// <summary>
    /// Floor for the tail-bucket probabilities inside logs and ratios (sparse teacher only): a tail with no mass
    /// on one side would otherwise make log 0 or 0/0. A bucket with exactly zero mass contributes 0 (0·log 0 = 0).
    /// </summary>
    public const double TailFloor = 1e-30;

    private KdPlan(int rows, int vocab, int studentVocab, KdOptions options)
    {
        Rows = rows;
        Vocab = vocab;
        StudentVocab = studentVocab;
        Options = options;
        Valid = new bool[rows];
        Entropy = new double[rows];
        KdCoefficient = new double[rows];
        Labels = new int[rows];
    }

    /// <summary>T.</summary>
    public int Rows { get; }

    /// <summary>The common vocabulary: min(teacher, student) columns; the wider side's padding is dropped.</summary>
    public int Vocab { get; }

    /// <summary>The student's logit row width.</summary>
    public int StudentVocab { get; }

    /// <summary>The settings the plan was made with.</summary>
    public KdOptions Options { get; }

    /// <summary>Tokens that take part (not ignored, not masked).</summary>
    public bool[] Valid { get; }

    /// <summary>N: the number of valid tokens.</summary>
    public int ValidCount { get; private set; }

    /// <summary>H_t of the teacher at temperature τ (0 for invalid tokens).</summary>
    public double[] Entropy { get; }

    /// <summary>w_t (0 for invalid tokens).</summary>
    public double[] Weights { get; private set; } = [];

    /// <summary>λ·τ²·w_t / N: the coefficient of KL_t in the loss (0 for invalid tokens).</summary>
    public double[] KdCoefficient { get; }

    /// <summary>(1 − λ) / N: the coefficient of CE_t (0 without labels).</summary>
    public double CeCoefficient { get; private set; }

    /// <summary>Labels for the cross-entropy, or -1 where there is none (ignored, or no labels given).</summary>
    public int[] Labels { get; }

    /// <summary>Dense teacher: per-row max of its logits.</summary>
    public float[]? TeacherMax { get; private set; }

    /// <summary>Dense teacher: log Σ e^{(z − max)/τ}, so log p_j = (z_j − max)/τ − this.</summary>
    public double[]? TeacherLogSum { get; private set; }

    /// <summary>Sparse teacher: tempered bucket log-probabilities [T, K+1]; the last of each row is the tail.</summary>
    public double[]? BucketLogProbs { get; private set; }

    /// <summary>The teacher this plan was made for.</summary>
    public KdTeacher Teacher { get; private set; } = null!;

    /// <summary>
    /// Runs the teacher-side pass. <paramref name="labels"/> (length T, or empty when λ = 1) marks padding with
    /// <see cref="KdOptions.IgnoreIndex"/> and supplies the CE targets. Dense teacher: one read of each row
    /// (block-online max and sums). Sparse teacher: K entries per row.
    /// </summary>
    public static KdPlan Create(KdTeacher teacher, ReadOnlySpan<int> labels, int studentVocab, KdOptions options)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(studentVocab);
        int vocab = CommonVocab(teacher.Vocab, studentVocab, options.MaxPaddingColumns);
        var plan = new KdPlan(teacher.Rows, vocab, studentVocab, options) { Teacher = teacher };
        plan.ReadLabels(labels);
        switch (teacher)
        {
            case DenseTeacher dense: plan.DensePass(dense); break;
            case SparseTeacher sparse: plan.SparsePass(sparse); break;
            default: throw new ArgumentException($"unknown teacher type {teacher.GetType().Name}");
        }
        plan.Finish();
        return plan;
    }

    /// <summary>
    /// A dense teacher's plan from per-row statistics computed elsewhere (on the device by
    /// <see cref="E3.Backends.IDistillationBackend.KdTeacherStatistics"/>, over the common vocabulary at 1/τ): the row max,
    /// log Σ e^{(z − max)/τ} and entropy. A valid row whose statistics are not finite held a NaN or infinite logit: it is an
    /// error, or an ignored row under <see cref="KdOptions.MaskNonFinite"/>, as in <see cref="Create"/>.
    /// </summary>
    public static KdPlan FromStatistics(KdTeacher teacher, ReadOnlySpan<int> labels, int studentVocab, KdOptions options,
        ReadOnlySpan<float> max, ReadOnlySpan<float> logSum, ReadOnlySpan<float> entropy)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(studentVocab);
        int rows = teacher.Rows;
        if (max.Length != rows || logSum.Length != rows || entropy.Length != rows)
            throw new ArgumentException($"teacher statistics: {max.Length}, {logSum.Length} and {entropy.Length} values for {rows} rows");
        var plan = new KdPlan(rows, CommonVocab(teacher.Vocab, studentVocab, options.MaxPaddingColumns), studentVocab, options) { Teacher = teacher };
        plan.ReadLabels(labels);
        plan.TeacherMax = max.ToArray();
        plan.TeacherLogSum = new double[rows];
        for (int t = 0; t < rows; t++)
        {
            if (!plan.Valid[t]) continue;
            if (!(float.IsFinite(max[t]) && float.IsFinite(logSum[t]) && float.IsFinite(entropy[t])))
            {
                plan.SkipNonFiniteTeacherRow(t);
                continue;
            }
            plan.TeacherLogSum[t] = logSum[t];
            plan.Entropy[t] = Math.Max(0.0, entropy[t]);
        }
        plan.Finish();
        return plan;
    }

    /// <summary>Removes a token after the fact (student row found non-finite with masking on) before weights are used.</summary>
    internal void Invalidate(int row)
    {
        Valid[row] = false;
        Entropy[row] = 0;
    }

    /// <summary>Recomputes N, the weights and the coefficients from <see cref="Valid"/> and <see cref="Entropy"/>.</summary>
    internal void Finish()
    {
        int n = 0;
        foreach (bool v in Valid) if (v) n++;
        ValidCount = n;
        Weights = TokenWeights.Compute(Entropy, Valid, Options);
        double lambda = Options.KdFraction, tau = Options.Temperature;
        for (int t = 0; t < Rows; t++)
            KdCoefficient[t] = Valid[t] ? lambda * tau * tau * Weights[t] / n : 0.0;
        CeCoefficient = n > 0 && lambda < 1 ? (1 - lambda) / n : 0.0;
        for (int t = 0; t < Rows; t++)
            if (!Valid[t]) Labels[t] = -1;
    }

    /// <summary>A dense teacher row holding NaN or ±∞: an error, or an ignored token under <see cref="KdOptions.MaskNonFinite"/>.</summary>
    private void SkipNonFiniteTeacherRow(int t)
    {
        if (!Options.MaskNonFinite)
            throw new ArgumentException($"teacher logits: row {t} holds a NaN or infinite value (set MaskNonFinite to skip such rows)");
        Valid[t] = false;
    }

    internal static int CommonVocab(int teacherVocab, int studentVocab, int maxPadding)
    {
        if (Math.Abs(teacherVocab - studentVocab) > maxPadding)
            throw new ArgumentException(
                $"vocabulary mismatch: teacher has {teacherVocab} columns, student {studentVocab}; only up to {maxPadding} padding columns may differ");
        return Math.Min(teacherVocab, studentVocab);
    }

    private void ReadLabels(ReadOnlySpan<int> labels)
    {
        bool mix = Options.KdFraction < 1;
        if (labels.IsEmpty)
        {
            if (mix) throw new ArgumentException($"labels: required when KdFraction = {Options.KdFraction} < 1 (cross-entropy mix)");
            Array.Fill(Valid, true);
            Array.Fill(Labels, -1);
            return;
        }
        if (labels.Length != Rows) throw new ArgumentException($"labels: {labels.Length} given for {Rows} tokens");
        for (int t = 0; t < Rows; t++)
        {
            int label = labels[t];
            if (label == Options.IgnoreIndex)
            {
                Labels[t] = -1;
                continue;
            }
            if ((uint)label >= (uint)Vocab)
                throw new ArgumentException($"labels[{t}] = {label}: outside the vocabulary [0, {Vocab}) and not ignore_index {Options.IgnoreIndex}");
            Valid[t] = true;
            Labels[t] = mix ? label : -1;
        }
    }

    private void DensePass(DenseTeacher teacher)
    {
        TeacherMax = new float[Rows];
        TeacherLogSum = new double[Rows];
        float k = (float)(1.0 / Options.Temperature);
        var maxima = TeacherMax;
        var logSums = TeacherLogSum;
        ParallelRows.For(Rows, () => new float[teacher.IsBf16 ? teacher.Vocab : 0], (t, scratch) =>
        {
            if (!Valid[t]) return scratch;
            var row = teacher.Row(t, scratch)[..Vocab];
            var state = new OnlineSoftmax(k);
            bool finite = true;
            for (int c = 0; c < row.Length; c += RowMath.Block)
            {
                var block = row.Slice(c, Math.Min(RowMath.Block, row.Length - c));
                float blockMax = RowMath.Max(block, ref finite);
                if (!finite) break;
                RowMath.SumExpEntropy(block, blockMax, k, out double s, out double u);
                state.Merge(blockMax, s, u);
            }
            if (!finite)
            {
                SkipNonFiniteTeacherRow(t);
                return scratch;
            }
            maxima[t] = state.Max;
            logSums[t] = Math.Log(state.Sum);
            // H = log S − Σ e^u·u / S with u = (z − max)/τ.
            Entropy[t] = Math.Max(0.0, Math.Log(state.Sum) - state.Shifted / state.Sum);
            return scratch;
        });
    }

    private void SparsePass(SparseTeacher teacher)
    {
        int k = teacher.K, stride = k + 1;
        var logProbs = new double[Rows * stride];
        var indices = teacher.Indices.Span;
        var given = teacher.LogProbs.Span;
        double invTau = 1.0 / Options.Temperature;
        var seen = new HashSet<int>();
        for (int t = 0; t < Rows; t++)
        {
            if (!Valid[t]) continue;
            seen.Clear();
            double mass = 0;
            var row = logProbs.AsSpan(t * stride, stride);
            for (int i = 0; i < k; i++)
            {
                int index = indices[t * k + i];
                float lp = given[t * k + i];
                if ((uint)index >= (uint)Vocab)
                    throw new ArgumentException($"sparse teacher: row {t} entry {i} has index {index}, outside the common vocabulary [0, {Vocab})");
                if (!seen.Add(index))
                    throw new ArgumentException($"sparse teacher: row {t} lists index {index} twice");
                if (float.IsNaN(lp) || lp > 1e-6f || float.IsPositiveInfinity(lp))
                {
                    if (!Options.MaskNonFinite || float.IsFinite(lp))
                        throw new ArgumentException($"sparse teacher: row {t} entry {i} has log-probability {lp}; must be a finite value <= 0");
                    Valid[t] = false;
                    break;
                }
                row[i] = Math.Min(lp, 0.0);
                mass += Math.Exp(row[i]);
            }
            if (!Valid[t]) continue;
            // fp32 log-probabilities of a full softmax can sum past 1 by rounding; more than that is corrupt data.
            if (mass > 1 + 1e-4)
                throw new ArgumentException($"sparse teacher: row {t} top-{k} probabilities sum to {mass}, more than 1");
            double tail = Math.Max(0.0, 1.0 - mass);
            row[k] = tail > 0 ? Math.Log(tail) : double.NegativeInfinity;
            // Temperature on the K+1 buckets: p_b ∝ P_b^{1/τ}, normalised over the buckets.
            double max = double.NegativeInfinity;
            for (int b = 0; b < stride; b++) max = Math.Max(max, row[b] * invTau);
            double sum = 0;
            for (int b = 0; b < stride; b++) sum += Math.Exp(row[b] * invTau - max);
            double log = max + Math.Log(sum);
            double entropy = 0;
            for (int b = 0; b < stride; b++)
            {
                row[b] = row[b] * invTau - log;
                if (!double.IsNegativeInfinity(row[b])) entropy -= Math.Exp(row[b]) * row[b];
            }
            Entropy[t] = Math.Max(0.0, entropy);
        }
        BucketLogProbs = logProbs;
    }
}

/// <summary>
/// Online softmax state merged block by block: the running max, S = Σ e^u and Σ e^u·u with u = (z − max)·k.
/// When a block raises the max by δ (in u units), S' = e^{−δ}S and (Σ e^u u)' = e^{−δ}(Σ e^u u − δ S).
/// </summary>
internal struct OnlineSoftmax(float k)
{
    public float Max = float.NegativeInfinity;
    public double Sum;
    public double Shifted;
    private readonly double scale = k;

    /// <summary>Adds a block whose sums were taken relative to <paramref name="blockMax"/>.</summary>
    public void Merge(float blockMax, double blockSum, double blockShifted)
    {
        if (blockMax > Max)
        {
            if (Sum > 0)
            {
                double delta = ((double)blockMax - Max) * scale;
                double f = Math.Exp(-delta);
                Shifted = f * (Shifted - delta * Sum);
                Sum *= f;
            }
            Max = blockMax;
            Sum += blockSum;
            Shifted += blockShifted;
        }
        else
        {
            double delta = ((double)Max - blockMax) * scale;
            double f = Math.Exp(-delta);
            Sum += f * blockSum;
            Shifted += f * (blockShifted - delta * blockSum);
        }
    }
}
