namespace E3.Backends;

/// <summary>
/// The backward operations of the decoder forward in <see cref="IBackend"/>, kept in a separate interface so that a
/// backend can serve inference without them. Gradients are fp32 whatever the weight dtype. Every reduction is
/// partitioned by output element (no racy accumulation), so results are bit-identical run to run.
/// "accumulate" means the destination is added to instead of overwritten.
/// </summary>
internal interface ITrainingBackend : IBackend
{
    /// <summary>dst = src (same element count, F32).</summary>
    void Copy(Tensor src, Tensor dst);

    /// <summary>Sets every element of <paramref name="t"/> to zero where it lives (no host buffer, no transfer).</summary>
    void Clear(Tensor t);

    /// <summary>dx[M,K] (+)= dy[M,N]·w[N,K]: the input gradient of <see cref="IBackend.MatMul"/>. w may be BF16.</summary>
    void MatMulInputGrad(Tensor dy, Tensor w, Tensor dx, bool accumulate);

    /// <summary>dw[N,K] += dy[M,N]ᵀ·x[M,K] and, when given, dBias[N] += Σ over rows of dy.</summary>
    void MatMulWeightGrad(Tensor x, Tensor dy, Tensor dw, Tensor? dBias);

    /// <summary>
    /// Backward of y = RmsNorm(x)·weight per row: dx (+)= ∂L/∂x from dy; dWeight (when given) += Σ rows dy·x̂.
    /// </summary>
    void RmsNormBackward(Tensor x, Tensor weight, float eps, Tensor dy, Tensor dx, bool accumulate, Tensor? dWeight);

    /// <summary>
    /// Backward of <see cref="IBackend.HeadNormRope"/>, in place: <paramref name="grad"/> holds ∂L/∂(output) on entry and
    /// ∂L/∂(input) on return. <paramref name="input"/> is the tensor as it was before the forward call.
    /// </summary>
    void HeadNormRopeBackward(Tensor input, int heads, int headDim, Tensor? normWeight, float eps, float ropeTheta,
        int tokensPerSequence, int startPosition, Tensor grad, Tensor? dNormWeight);

    /// <summary>
    /// Causal GQA attention over positions 0..T−1 without a cache, as <see cref="IBackend.Attention"/> computes it,
    /// also writing each query row's log-sum-exp of scaled scores into <paramref name="logSumExp"/> [B·T, heads] so
    /// that the backward can recompute probabilities instead of keeping a [T×T] tensor per head.
    /// </summary>
    void AttentionForward(Tensor q, Tensor k, Tensor v, int batch, int tokensPerSequence, int heads, int kvHeads, int headDim,
        float scale, Tensor output, Tensor logSumExp);

    /// <summary>
    /// Backward of <see cref="AttentionForward"/>: overwrites dq, dk, dv from dOutput, recomputing the probabilities
    /// row by row from the saved log-sum-exp.
    /// </summary>
    void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor dOutput, Tensor logSumExp, int batch, int tokensPerSequence,
        int heads, int kvHeads, int headDim, float scale, Tensor dq, Tensor dk, Tensor dv);

    /// <summary>Backward of y = silu(gate)·up: overwrites dGate and dUp.</summary>
    void SwiGluBackward(Tensor gate, Tensor up, Tensor dy, Tensor dGate, Tensor dUp);

    /// <summary>
    /// Backward of <see cref="IBackend.GatedResidual"/> (out = h + gate·((a + mlp) − h)) given dOut: writes
    /// dLayerOutput = gate·dOut and dh = (1 − gate)·dOut (dh may be dOut), and returns ∂L/∂gate = Σ ⟨dOut, a + mlp − h⟩,
    /// summed in double in a fixed order.
    /// </summary>
    double GatedResidualBackward(Tensor h, Tensor a, Tensor mlp, float gate, Tensor dOut, Tensor dh, Tensor dLayerOutput);

    /// <summary>dTable[ids[t],:] += dy[t,:], rows summed in token order.</summary>
    void EmbeddingBackward(ReadOnlySpan<int> ids, Tensor dy, Tensor dTable);

    /// <summary>y += x elementwise.</summary>
    void AddInPlace(Tensor y, Tensor x);
}
