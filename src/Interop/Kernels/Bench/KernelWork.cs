namespace E3.Interop.Kernels.Bench;

/// <summary>
/// Analytic work of one kernel call: the bytes it must move to or from device memory (each input read once, each
/// output written once, caches not counted) and its floating-point operations (a multiply-add counts 2; exp, log,
/// rsqrt and compares count 1). <c>e</c> is the bytes per element of the activations (2 for bf16, 4 for fp32).
/// The kernel files' headers describe the same traffic.
/// </summary>
internal readonly record struct KernelWork(long Bytes, long Flops)
{
    /// <summary>A device-to-device copy: n bytes read, n written.</summary>
    public static KernelWork Copy(long bytes) => new(2 * bytes, 0);

    /// <summary>y[m,n] = x[m,k] · w[n,k]ᵀ: x, w read and y written once; 2mnk FLOPs.</summary>
    public static KernelWork Gemm(long m, long n, long k, int e) => new((m * k + n * k + m * n) * e, 2 * m * n * k);

    /// <summary>Embedding gather: one table row read and one output row written per token, plus the int32 ids.</summary>
    public static KernelWork Embedding(long tokens, long dim, int e) => new(2 * tokens * dim * e + 4 * tokens, 0);

    /// <summary>Embedding gather of a bf16 table into fp32 rows (the trainer's): 2 bytes read and 4 written per element, plus the ids.</summary>
    public static KernelWork EmbeddingWidened(long tokens, long dim) => new(6 * tokens * dim + 4 * tokens, 0);

    /// <summary>RMSNorm: x read, y written, the weight once; square, sum, scale, weight: 4 per element.</summary>
    public static KernelWork RmsNorm(long rows, long cols, int e) => new((2 * rows * cols + cols) * e, 4 * rows * cols);

    /// <summary>Residual add + RMSNorm: x and delta read, sum and y written, the weight once; 5 per element.</summary>
    public static KernelWork AddRmsNorm(long rows, long cols, int e) => new((4 * rows * cols + cols) * e, 5 * rows * cols);

    /// <summary>Gated residual h += g(a + m - h): h, a, m read, h written; 4 per element.</summary>
    public static KernelWork GatedResidual(long count, int e) => new(4 * count * e, 4 * count);

    /// <summary>
    /// Gated residual fused with the next RMSNorm: h, a, m read, h and y written, the weight once; 4 + 4 per element.
    /// </summary>
    public static KernelWork GatedResidualRmsNorm(long rows, long cols, int e) => new((5 * rows * cols + cols) * e, 8 * rows * cols);

    /// <summary>Per-head RMSNorm + RoPE in place: x read and written, the norm weight once; norm 4 + rotation 3 per element.</summary>
    public static KernelWork HeadNormRope(long tokens, long heads, long headDim, int e) =>
        new((2 * tokens * heads * headDim + headDim) * e, 7 * tokens * heads * headDim);

    /// <summary>
    /// <see cref="HeadNormRope"/> on q (<paramref name="heads"/>) and k (<paramref name="kvHeads"/>) in one launch: both read
    /// and written, each norm weight once.
    /// </summary>
    public static KernelWork QkNormRope(long tokens, long heads, long kvHeads, long headDim, int e) =>
        new((2 * tokens * (heads + kvHeads) * headDim + 2 * headDim) * e, 7 * tokens * (heads + kvHeads) * headDim);

    /// <summary>
    /// Causal prefill with the KV append: q read and the output written (2·b·T·H·D), new k and v read, written to the
    /// cache and read back once (6·b·T·Hkv·D); QKᵀ and PV over the b·T(T+1)/2 causal pairs: 4·D FLOPs per pair and head.
    /// </summary>
    public static KernelWork AttentionPrefill(long batch, long tokens, long heads, long kvHeads, long headDim, int e) =>
        new((2 * batch * tokens * heads * headDim + 6 * batch * tokens * kvHeads * headDim) * e,
            4 * headDim * heads * (batch * tokens * (tokens + 1) / 2));

    /// <summary>
    /// Split-K decode + combine over <paramref name="context"/> keys: the K and V caches read once (2·b·C·Hkv·D), q read and
    /// the output written, the new k, v appended (4·b·Hkv·D), and the fp32 partials ((D + 2) floats per head and split)
    /// written and read back; 4·D FLOPs per key and head.
    /// </summary>
    public static KernelWork AttentionDecode(long batch, long context, long heads, long kvHeads, long headDim, long splits, int e) =>
        new((2 * batch * context * kvHeads * headDim + 2 * batch * heads * headDim + 4 * batch * kvHeads * headDim) * e
            + 2 * 4 * batch * heads * splits * (headDim + 2),
            4 * batch * heads * context * headDim);

    /// <summary>SwiGLU y = silu(gate)·up: gate, up read, y written; exp, add, divide, 2 multiplies: 5 per element.</summary>
    public static KernelWork SwiGlu(long count, int e) => new(3 * count * e, 5 * count);

    /// <summary>KD teacher pass: the teacher row read once, 3 floats written per row; max, 2 exp-sums: 5 per element.</summary>
    public static KernelWork KdTeacher(long rows, long vocab, int e) => new(rows * vocab * e + 12 * rows, 5 * rows * vocab);

    /// <summary>Fused dense KD student pass: student and teacher read twice, the gradient written (5·V·e per row), 7 per-row scalars; 20 per element.</summary>
    public static KernelWork KdDense(long rows, long vocab, int e) => KdDense(rows, vocab, e, e);

    /// <summary>The dense student pass with an <paramref name="studentBytes"/>-byte student and a <paramref name="teacherBytes"/>-byte teacher: 3·V and 2·V of each.</summary>
    public static KernelWork KdDense(long rows, long vocab, int studentBytes, int teacherBytes) =>
        new(rows * vocab * (3L * studentBytes + 2L * teacherBytes) + 28 * rows, 20 * rows * vocab);

    /// <summary>Sparse KD student pass: the student read twice and the gradient written (3·V·e), k indices and k+1 log-probs per row; 12 per element.</summary>
    public static KernelWork KdSparse(long rows, long vocab, long topK, int e) =>
        new(3 * rows * vocab * e + rows * (4 * topK + 4 * (topK + 1) + 28), 12 * rows * vocab);

    /// <summary>
    /// Gumbel-TopK forward + backward in one launch (fp32): logits and their gradient (2L), dL/dm read and hard, soft
    /// written (3SL), the soft-top-k steps' p and 1 - p written (2SkL); k softmax steps of ~10 FLOPs per layer.
    /// </summary>
    public static KernelWork GumbelTopK(long samples, long layers, long keep) =>
        new(4 * (2 * layers + 3 * samples * layers + 2 * samples * keep * layers), 10 * samples * keep * layers);

    /// <summary>Row argmax: every logit read once (one compare each), one int32 written per row.</summary>
    public static KernelWork ArgMax(long rows, long vocab, int e) => new(rows * vocab * e + 4 * rows, rows * vocab);

    /// <summary>
    /// Training attention forward (fp32, no cache): q, k, v read, the output and the per-(row, head) log-sum-exp written;
    /// 4·D FLOPs per causal pair and head, as in <see cref="AttentionPrefill"/>.
    /// </summary>
    public static KernelWork AttentionTrainForward(long batch, long tokens, long heads, long kvHeads, long headDim) =>
        new(4 * (2 * batch * tokens * heads * headDim + 2 * batch * tokens * kvHeads * headDim + batch * tokens * heads),
            4 * headDim * heads * (batch * tokens * (tokens + 1) / 2));

    /// <summary>
    /// Training attention backward (fp32): q, o, dO read and dq written (4·b·T·H·D), k, v read and dk, dv written
    /// (4·b·T·Hkv·D), the log-sum-exp read and delta written and read (3·b·T·H); per causal pair and head, the dq pass
    /// recomputes S and dP and forms dQ (6·D) and the dk/dv pass recomputes S and dP and forms dV and dK (8·D), plus
    /// delta = rowsum(dO∘O) (2·D per row and head).
    /// </summary>
    public static KernelWork AttentionBackward(long batch, long tokens, long heads, long kvHeads, long headDim) =>
        new(4 * (4 * batch * tokens * heads * headDim + 4 * batch * tokens * kvHeads * headDim + 3 * batch * tokens * heads),
            14 * headDim * heads * (batch * tokens * (tokens + 1) / 2) + 2 * batch * tokens * heads * headDim);

    /// <summary>
    /// RMSNorm backward over fp32 rows, then the weight gradient's column sum: x and dy read, dx and the per-row terms
    /// dy·x̂ written, the weight read once (4·rows·cols + cols), then the terms read and dweight written (rows·cols + cols);
    /// 8 FLOPs per element in the rows pass, 1 in the column sum.
    /// </summary>
    public static KernelWork RmsNormBackward(long rows, long cols) =>
        new(4 * (5 * rows * cols + 2 * cols), 9 * rows * cols);

    /// <summary>SwiGLU backward (fp32): gate, up and dy read, dgate and dup written; sigmoid and the two products, 12 FLOPs per element.</summary>
    public static KernelWork SwiGluBackward(long count) => new(4 * 5 * count, 12 * count);

    /// <summary>
    /// Gated-residual backward (fp32): h, a, mlp and dOut read, dh and dLayer written; the gate's dot product and the two
    /// scalings, 6 FLOPs per element (the per-block partials are negligible).
    /// </summary>
    public static KernelWork GatedResidualBackward(long count) => new(4 * 6 * count, 6 * count);

    /// <summary>
    /// Grouped embedding backward (fp32): every dy row read once and each distinct id's table row read and written, plus
    /// the 4-byte plan entries (one per token, two per id, one end mark); one add per element of dy.
    /// </summary>
    public static KernelWork EmbeddingBackward(long tokens, long unique, long dim) =>
        new(4 * (tokens * dim + 2 * unique * dim) + 4 * (tokens + 2 * unique + 1), tokens * dim);

    /// <summary>bf16 → fp32 widening (a bf16 weight widened for fp32 kernels): 2 bytes read and 4 written per element, no arithmetic.</summary>
    public static KernelWork Widen(long count) => new(6 * count, 0);

    /// <summary>
    /// Top-K log-probabilities: each row read K + 2 times (max, Σ exp, K selection passes; on a GPU the selection passes
    /// are served from L2 when a row fits), K int32 indices and K fp32 values written per row; one compare per logit in
    /// the max pass, a subtract, exp and add in the sum pass, two compares per logit in each selection pass.
    /// </summary>
    public static KernelWork TopKLogProbs(long rows, long vocab, long k, int e) =>
        new((k + 2) * rows * vocab * e + 8 * rows * k, (2 * k + 4) * rows * vocab);
}
