namespace E3.Interop.Kernels.Bench;

/// <summary>
/// Analytic work of one kernel call: the bytes it must move to or from device memory (each input read once, each
/// output written once, caches not counted) and its floating-point operations (a multiply-add counts 2; exp, log,
/// rsqrt and compares count 1). <c>e</c> is the bytes per element of the activations (2 for bf16, 4 for fp32).
/// The kernel files' headers describe the same traffic.
/// </summary>
public readonly record struct KernelWork(long Bytes, long Flops)
{
    /// <summary>A device-to-device copy: n bytes read, n written.</summary>
    public static KernelWork Copy(long bytes) => new(2 * bytes, 0);

    /// <summary>y[m,n] = x[m,k] · w[n,k]ᵀ: x, w read and y written once; 2mnk FLOPs.</summary>
    public static KernelWork Gemm(long m, long n, long k, int e) => new((m * k + n * k + m * n) * e, 2 * m * n * k);

    /// <summary>Embedding gather: one table row read and one output row written per token, plus the int32 ids.</summary>
    public static KernelWork Embedding(long tokens, long dim, int e) => new(2 * tokens * dim * e + 4 * tokens, 0);

    /// <summary>RMSNorm: x read, y written, the weight once; square, sum, scale, weight: 4 per element.</summary>
    public static KernelWork RmsNorm(long rows, long cols, int e) => new((2 * rows * cols + cols) * e, 4 * rows * cols);

    /// <summary>Residual add + RMSNorm: x and delta read, sum and y written, the weight once; 5 per element.</summary>
    public static KernelWork AddRmsNorm(long rows, long cols, int e) => new((4 * rows * cols + cols) * e, 5 * rows * cols);

    /// <summary>Gated residual h += g(a + m - h): h, a, m read, h written; 4 per element.</summary>
    public static KernelWork GatedResidual(long count, int e) => new(4 * count * e, 4 * count);

    /// <summary>Per-head RMSNorm + RoPE in place: x read and written, the norm weight once; norm 4 + rotation 3 per element.</summary>
    public static KernelWork HeadNormRope(long tokens, long heads, long headDim, int e) =>
        new((2 * tokens * heads * headDim + headDim) * e, 7 * tokens * heads * headDim);

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
    public static KernelWork KdDense(long rows, long vocab, int e) => new(5 * rows * vocab * e + 28 * rows, 20 * rows * vocab);

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
    /// Top-K log-probabilities: each row read K + 2 times (max, Σ exp, K selection passes; on a GPU the selection passes
    /// are served from L2 when a row fits), K int32 indices and K fp32 values written per row; one compare per logit in
    /// the max pass, a subtract, exp and add in the sum pass, two compares per logit in each selection pass.
    /// </summary>
    public static KernelWork TopKLogProbs(long rows, long vocab, long k, int e) =>
        new((k + 2) * rows * vocab * e + 8 * rows * k, (2 * k + 4) * rows * vocab);
}
