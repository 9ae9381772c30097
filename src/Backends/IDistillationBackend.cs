namespace E3.Backends;

/// <summary>
/// The teacher side of <see cref="IDistillationBackend.KdLmHead"/>: dense logits living on the backend, or a sparse
/// top-K distribution given from the host. <see cref="Vocab"/> is the common vocabulary the loss compares over.
/// </summary>
internal abstract record KdHeadTeacher(int Vocab);

/// <summary>
/// Dense teacher logits [rows, ≥ vocab] on the backend, with the per-row statistics of their tempered softmax
/// (<see cref="IDistillationBackend.KdTeacherStatistics"/>): row max, log Σ e^{(z − max)/τ} and entropy.
/// </summary>
internal sealed record DenseKdHeadTeacher(Tensor Logits, int Vocab, float[] Max, float[] LogSum, float[] Entropy) : KdHeadTeacher(Vocab);

/// <summary>
/// A sparse teacher: top-K indices [rows, K] and the tempered log-probabilities of the K+1 buckets [rows, K+1] (the
/// K tokens, then the tail holding the remaining mass).
/// </summary>
internal sealed record SparseKdHeadTeacher(int[] Indices, float[] BucketLogProbs, int TopK, int Vocab) : KdHeadTeacher(Vocab);

/// <summary>
/// The per-row settings the host derives from the teacher's entropies (the token weights depend on every row, so they
/// are fixed before any student row is processed).
/// </summary>
/// <param name="KdCoefficient">λ·τ²·w_t/N per row.</param>
/// <param name="Labels">Per row: ≥ 0 a cross-entropy target, −1 a row without cross-entropy, −2 an ignored row.</param>
/// <param name="CeCoefficient">(1 − λ)/N.</param>
/// <param name="InverseTemperature">1/τ.</param>
/// <param name="Reverse">KL(q‖p) instead of KL(p‖q).</param>
internal sealed record KdHeadRows(float[] KdCoefficient, int[] Labels, float CeCoefficient, float InverseTemperature, bool Reverse);

/// <summary>What <see cref="IDistillationBackend.KdLmHead"/> used.</summary>
/// <param name="ChunkRows">Rows of logits formed at a time.</param>
/// <param name="ChunkBytes">Size of the one logits chunk: the pass's peak extra memory on the backend.</param>
internal readonly record struct KdHeadChunking(int ChunkRows, long ChunkBytes);

/// <summary>
/// A training backend that runs the entropy-weighted distillation loss fused with the LM head where the hidden states
/// and weights live, so that a step moves per-row scalars to the host instead of the head, the hidden states and
/// [rows, V] logits. Backends without it have the loss computed on the host.
/// </summary>
internal interface IDistillationBackend : ITrainingBackend
{
    /// <summary>
    /// Whether <see cref="KdTeacherStatistics"/> and a <see cref="DenseKdHeadTeacher"/> can take <paramref name="tensor"/>
    /// where it is: this backend's own, or one of a backend sharing its device (<c>GpuBackend.CreateSibling</c>), F32
    /// or BF16. Otherwise the caller uploads the logits.
    /// </summary>
    bool Reads(Tensor tensor);

    /// <summary>
    /// The teacher pass over the first <paramref name="vocab"/> columns of <paramref name="teacherLogits"/> [rows, ≥ vocab]
    /// at temperature 1/<paramref name="inverseTemperature"/>: per row the max, log Σ e^{(z − max)/τ} and entropy, written to
    /// the host spans (rows each). A row holding NaN or ±∞ gives non-finite statistics.
    /// </summary>
    void KdTeacherStatistics(Tensor teacherLogits, int vocab, float inverseTemperature, Span<float> max, Span<float> logSum, Span<float> entropy);

    /// <summary>
    /// The loss fused with the LM head over chunks of rows: logits = hidden·lmHeadᵀ for one chunk, overwritten in place
    /// by dL/dlogits, then dHidden = dlogits·lmHead and, when <paramref name="dLmHead"/> is given, dLmHead += dlogitsᵀ·hidden
    /// (accumulated, like every weight gradient). Per row, KL_t and CE_t go to <paramref name="rowKl"/> and <paramref name="rowCe"/>
    /// (0 for ignored rows). The [rows, V] logits never exist: a chunk holds as many rows as
    /// <paramref name="chunkBudgetBytes"/> allows, at least one.
    /// </summary>
    /// <param name="hidden">The LM head's input [rows, H].</param>
    /// <param name="lmHead">The head [V, H]; V may exceed the teacher's vocabulary (padding columns get zero gradient).</param>
    /// <param name="teacher">The teacher's side.</param>
    /// <param name="rows">Per-row coefficients and labels.</param>
    /// <param name="dHidden">Overwritten with dL/dhidden [rows, H].</param>
    /// <param name="dLmHead">The head's fp32 gradient [V, H], added to; null for a frozen head.</param>
    /// <param name="chunkBudgetBytes">Bytes of fp32 logits one chunk may hold.</param>
    /// <param name="rowKl">Output: KL_t per row.</param>
    /// <param name="rowCe">Output: CE_t per row.</param>
    KdHeadChunking KdLmHead(Tensor hidden, Tensor lmHead, KdHeadTeacher teacher, KdHeadRows rows, Tensor dHidden, Tensor? dLmHead,
        long chunkBudgetBytes, Span<float> rowKl, Span<float> rowCe);
}
