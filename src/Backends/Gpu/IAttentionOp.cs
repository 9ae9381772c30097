namespace E3.Backends.Gpu;

/// <summary>
/// The arguments of <see cref="IBackend.Attention"/> once <see cref="GpuBackend"/> has checked them: k and v
/// [B*T, kvHeads*headDim] go into the caches [B, capacity, kvHeads*headDim] at positions start..start+T-1, then
/// causal GQA attention of q [B*T, heads*headDim] over positions 0..start+t is written to output.
/// </summary>
internal readonly record struct AttentionCall(
    GpuTensor Q, GpuTensor K, GpuTensor V, GpuTensor KCache, GpuTensor VCache, GpuTensor Output,
    int Batch, int TokensPerSequence, int StartPosition, int Heads, int KvHeads, int HeadDim, float Scale)
{
    /// <summary>Positions each sequence's cache can hold.</summary>
    public int Capacity => KCache.Shape[1];
}

/// <summary>
/// The attention step of <see cref="GpuBackend"/>: <see cref="KernelAttention"/> by default; the seam lets a
/// faster variant (a tensor-core path, a paged cache) replace it without touching the backend.
/// </summary>
internal interface IAttentionOp : IDisposable
{
    /// <summary>Queues the cache update and the attention of <paramref name="call"/> on the backend's stream.</summary>
    void Run(in AttentionCall call);
}
