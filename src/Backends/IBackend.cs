namespace E3.Backends;

/// <summary>
/// The operations the decoder is written against, once, for every device (cpu, cuda, emu).
/// Shapes are row-major. "Tokens" below means the flattened batch: row r belongs to sequence r / T at
/// position <c>start + r % T</c>. Activations use <see cref="ActivationType"/>; weights may be F32 or BF16.
/// </summary>
internal interface IBackend : IDisposable
{
    /// <summary>"cpu", "cuda" or "emu".</summary>
    string Name { get; }

    /// <summary>The dtype this backend keeps activations in (F32 on cpu; BF16 on cuda).</summary>
    DType ActivationType { get; }

    /// <summary>A zero-filled tensor.</summary>
    Tensor Allocate(DType dtype, params int[] shape);

    /// <summary>Creates a tensor of <paramref name="storeAs"/> from raw little-endian values of <paramref name="sourceType"/>.</summary>
    Tensor Upload(ReadOnlySpan<byte> raw, DType sourceType, int[] shape, DType storeAs);

    /// <summary>Copies fp32 values into an existing tensor, converting to its dtype.</summary>
    void Upload(ReadOnlySpan<float> values, Tensor dst);

    /// <summary>Copies a tensor to host fp32 values (waits for pending work).</summary>
    void Download(Tensor src, Span<float> dst);

    /// <summary>Waits until every queued operation has finished.</summary>
    void Synchronize();

    /// <summary>y[t,:] = table[ids[t],:]. Ids must already be validated against the table's rows.</summary>
    void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y);

    /// <summary>y = w * x * rsqrt(mean(x^2) + eps) per row of the last dimension, computed in fp32.</summary>
    void RmsNorm(Tensor x, Tensor weight, float eps, Tensor y);

    /// <summary>sum = x + delta, then y = RmsNorm(sum): the attention residual fused with the MLP's norm. sum may be x.</summary>
    void AddRmsNorm(Tensor x, Tensor delta, Tensor sum, Tensor weight, float eps, Tensor y);

    /// <summary>
    /// The gated end of a decoder layer: h = h + gate·((a + mlp) − h), where a + mlp is the ungated layer output.
    /// A gate of exactly 1 writes a + mlp, bit for bit what an ungated layer computes.
    /// </summary>
    void GatedResidual(Tensor h, Tensor a, Tensor mlp, float gate);

    /// <summary>
    /// <see cref="GatedResidual"/>, then y = RmsNorm(h): a decoder layer's end fused with the next kept layer's input
    /// norm, so h is read once. The same values as the two calls one after the other.
    /// </summary>
    void GatedResidualRmsNorm(Tensor h, Tensor a, Tensor mlp, float gate, Tensor weight, float eps, Tensor y);

    /// <summary>y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]); the layout of a torch Linear weight.</summary>
    void MatMul(Tensor x, Tensor w, Tensor? bias, Tensor y);

    /// <summary>
    /// In place on x[tokens, heads*headDim]: optional per-head RMSNorm over headDim (Qwen3's q_norm/k_norm),
    /// then rotary embedding (rotate_half convention) at each row's position.
    /// </summary>
    void HeadNormRope(Tensor x, int heads, int headDim, Tensor? normWeight, float eps, float ropeTheta, int tokensPerSequence, int startPosition);

    /// <summary>
    /// <see cref="HeadNormRope"/> on an attention layer's queries q[tokens, heads*headDim] and keys
    /// k[tokens, kvHeads*headDim], each with its own norm weight: the same values as the two calls, which a GPU makes in
    /// one launch.
    /// </summary>
    void QkNormRope(Tensor q, Tensor k, int heads, int kvHeads, int headDim, Tensor? qNorm, Tensor? kNorm, float eps, float ropeTheta,
        int tokensPerSequence, int startPosition);

    /// <summary>
    /// Writes k and v [B*T, kvHeads*headDim] into the caches [B, capacity, kvHeads*headDim] at positions
    /// start..start+T-1, then computes causal GQA attention of q [B*T, heads*headDim] over positions
    /// 0..start+t for each query, scaled by <paramref name="scale"/>, into output [B*T, heads*headDim].
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, Tensor kCache, Tensor vCache, int batch, int tokensPerSequence, int startPosition,
        int heads, int kvHeads, int headDim, float scale, Tensor output);

    /// <summary>y = silu(gate) * up, elementwise. y may be gate.</summary>
    void SwiGlu(Tensor gate, Tensor up, Tensor y);

    /// <summary>Copies selected rows: dst[i,:] = src[rows[i],:].</summary>
    void GatherRows(Tensor src, ReadOnlySpan<int> rows, Tensor dst);
}
