namespace E3.Backends;

/// <summary>
/// Wraps a training backend and counts the bytes of every tensor created through <see cref="Allocate"/> and
/// <see cref="Upload(ReadOnlySpan{byte}, DType, int[], DType)"/>: the live total and its peak. Tensors are the inner
/// backend's own, so every operation passes straight through. Frees are seen lazily (a tensor's
/// <see cref="Tensor.IsDisposed"/> is checked at the next allocation), which is exact for the peak because the live
/// total only rises at an allocation. Used to check the memory planner against what the engine really allocates.
/// </summary>
internal sealed class AllocationTrackingBackend : ITrainingBackend
{
    readonly ITrainingBackend _inner;
    readonly List<Tensor> _live = new();
    readonly Lock _lock = new();

    /// <param name="inner">The backend doing the work; not disposed by this wrapper.</param>
    public AllocationTrackingBackend(ITrainingBackend inner) => _inner = inner ?? throw new ArgumentNullException(nameof(inner));

    /// <summary>Bytes held by tensors created through this wrapper and not yet disposed.</summary>
    public long LiveBytes { get { lock (_lock) { Sweep(); return _live.Sum(t => t.SizeInBytes); } } }

    /// <summary>The largest <see cref="LiveBytes"/> seen at any allocation since creation or <see cref="ResetPeak"/>.</summary>
    public long PeakBytes { get; private set; }

    /// <summary>Starts a new peak measurement from the bytes live now.</summary>
    public void ResetPeak() => PeakBytes = LiveBytes;

    /// <summary>Tensors created through this wrapper since creation.</summary>
    public long Allocations { get; private set; }

    Tensor Track(Tensor t)
    {
        lock (_lock)
        {
            Allocations++;
            Sweep();
            _live.Add(t);
            PeakBytes = Math.Max(PeakBytes, _live.Sum(x => x.SizeInBytes));
        }
        return t;
    }

    void Sweep() => _live.RemoveAll(t => t.IsDisposed);

    public string Name => _inner.Name;
    public DType ActivationType => _inner.ActivationType;
    public Tensor Allocate(DType dtype, params int[] shape) => Track(_inner.Allocate(dtype, shape));
    public Tensor Upload(ReadOnlySpan<byte> raw, DType sourceType, int[] shape, DType storeAs) => Track(_inner.Upload(raw, sourceType, shape, storeAs));
    public void Upload(ReadOnlySpan<float> values, Tensor dst) => _inner.Upload(values, dst);
    public void Download(Tensor src, Span<float> dst) => _inner.Download(src, dst);
    public void Synchronize() => _inner.Synchronize();
    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y) => _inner.Embedding(table, ids, y);
    public void RmsNorm(Tensor x, Tensor weight, float eps, Tensor y) => _inner.RmsNorm(x, weight, eps, y);
    public void AddRmsNorm(Tensor x, Tensor delta, Tensor sum, Tensor weight, float eps, Tensor y) => _inner.AddRmsNorm(x, delta, sum, weight, eps, y);
    public void GatedResidual(Tensor h, Tensor a, Tensor mlp, float gate) => _inner.GatedResidual(h, a, mlp, gate);
    public void GatedResidualRmsNorm(Tensor h, Tensor a, Tensor mlp, float gate, Tensor weight, float eps, Tensor y) =>
        _inner.GatedResidualRmsNorm(h, a, mlp, gate, weight, eps, y);
    public void MatMul(Tensor x, Tensor w, Tensor? bias, Tensor y) => _inner.MatMul(x, w, bias, y);
    public void HeadNormRope(Tensor x, int heads, int headDim, Tensor? normWeight, float eps, float ropeTheta, int tokensPerSequence, int startPosition)
        => _inner.HeadNormRope(x, heads, headDim, normWeight, eps, ropeTheta, tokensPerSequence, startPosition);
    public void QkNormRope(Tensor q, Tensor k, int heads, int kvHeads, int headDim, Tensor? qNorm, Tensor? kNorm, float eps, float ropeTheta,
        int tokensPerSequence, int startPosition) =>
        _inner.QkNormRope(q, k, heads, kvHeads, headDim, qNorm, kNorm, eps, ropeTheta, tokensPerSequence, startPosition);
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor kCache, Tensor vCache, int batch, int tokensPerSequence, int startPosition,
        int heads, int kvHeads, int headDim, float scale, Tensor output)
        => _inner.Attention(q, k, v, kCache, vCache, batch, tokensPerSequence, startPosition, heads, kvHeads, headDim, scale, output);
    public void SwiGlu(Tensor gate, Tensor up, Tensor y) => _inner.SwiGlu(gate, up, y);
    public void GatherRows(Tensor src, ReadOnlySpan<int> rows, Tensor dst) => _inner.GatherRows(src, rows, dst);
    public void Copy(Tensor src, Tensor dst) => _inner.Copy(src, dst);
    public void Clear(Tensor t) => _inner.Clear(t);
    public void MatMulInputGrad(Tensor dy, Tensor w, Tensor dx, bool accumulate) => _inner.MatMulInputGrad(dy, w, dx, accumulate);
    public void MatMulWeightGrad(Tensor x, Tensor dy, Tensor dw, Tensor? dBias) => _inner.MatMulWeightGrad(x, dy, dw, dBias);
    public void RmsNormBackward(Tensor x, Tensor weight, float eps, Tensor dy, Tensor dx, bool accumulate, Tensor? dWeight)
        => _inner.RmsNormBackward(x, weight, eps, dy, dx, accumulate, dWeight);
    public void HeadNormRopeBackward(Tensor input, int heads, int headDim, Tensor? normWeight, float eps, float ropeTheta,
        int tokensPerSequence, int startPosition, Tensor grad, Tensor? dNormWeight)
        => _inner.HeadNormRopeBackward(input, heads, headDim, normWeight, eps, ropeTheta, tokensPerSequence, startPosition, grad, dNormWeight);
    public void AttentionForward(Tensor q, Tensor k, Tensor v, int batch, int tokensPerSequence, int heads, int kvHeads, int headDim,
        float scale, Tensor output, Tensor logSumExp)
        => _inner.AttentionForward(q, k, v, batch, tokensPerSequence, heads, kvHeads, headDim, scale, output, logSumExp);
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor dOutput, Tensor logSumExp, int batch, int tokensPerSequence,
        int heads, int kvHeads, int headDim, float scale, Tensor dq, Tensor dk, Tensor dv)
        => _inner.AttentionBackward(q, k, v, output, dOutput, logSumExp, batch, tokensPerSequence, heads, kvHeads, headDim, scale, dq, dk, dv);
    public void SwiGluBackward(Tensor gate, Tensor up, Tensor dy, Tensor dGate, Tensor dUp) => _inner.SwiGluBackward(gate, up, dy, dGate, dUp);
    public double GatedResidualBackward(Tensor h, Tensor a, Tensor mlp, float gate, Tensor dOut, Tensor dh, Tensor dLayerOutput)
        => _inner.GatedResidualBackward(h, a, mlp, gate, dOut, dh, dLayerOutput);
    public void EmbeddingBackward(ReadOnlySpan<int> ids, Tensor dy, Tensor dTable) => _inner.EmbeddingBackward(ids, dy, dTable);
    public void AddInPlace(Tensor y, Tensor x) => _inner.AddInPlace(y, x);

    /// <summary>Does not dispose the inner backend, which the caller owns.</summary>
    public void Dispose() { }
}
