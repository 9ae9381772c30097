using E3.Interop.Gpu;
using E3.Interop.Kernels;

namespace E3.Backends.Gpu;

// The backward pass on the device, fp32 activations and gradients (bf16 weights are read widened to fp32, which holds the
// same values). Every reduction is partitioned by output element or done in a fixed order (column sums in row
// order, a two-stage double reduction for the gate gradient, grouped embedding rows, attention dK/dV summed by the block
// that owns them), so no kernel used here takes an atomic and gradients are bit-identical run to run.
internal sealed partial class GpuBackend : ITrainingBackend
{
    TrainingResources? _training;

    TrainingResources Training => _training ??= new TrainingResources(_device, Stream);

    /// <inheritdoc/>
    public void Copy(Tensor src, Tensor dst)
    {
        var s = Grad(src); var d = Grad(dst);
        if (s.ElementCount != d.ElementCount) throw Shape("Copy", src, dst);
        if (s.SizeInBytes > 0) _device.CopyAsync(d.Pointer, s.Pointer, s.SizeInBytes, Stream);
    }

    /// <inheritdoc/>
    public void Clear(Tensor t)
    {
        var g = Own(t);
        if (g.SizeInBytes > 0) _device.FillBytesAsync(g.Pointer, 0, g.SizeInBytes, Stream);
        g.Converted = null; // a cleared weight's converted copy no longer matches it
    }

    /// <inheritdoc/>
    public void AddInPlace(Tensor y, Tensor x)
    {
        var ys = Grad(y); var xs = Grad(x);
        if (ys.ElementCount != xs.ElementCount) throw Shape("AddInPlace", y, x);
        _kernels.Residual.AddInPlace(ys.F32, xs.F32, ys.ElementCount, Stream);
    }

    /// <inheritdoc/>
    public void MatMulInputGrad(Tensor dy, Tensor w, Tensor dx, bool accumulate)
    {
        var dys = Grad(dy); var ws = Weight(w); var dxs = Grad(dx);
        int m = checked((int)dys.Rows), n = dys.Columns, k = ws.Columns;
        if (ws.Rows != n || dxs.Rows != m || dxs.Columns != k) throw Shape("MatMulInputGrad", dy, w);
        if (m == 0 || k == 0) return;
        _device.Gemm(RowMajorGemm.LinearInputGrad(dys.Pointer, ws.Pointer, dxs.Pointer, m, n, k, GemmDataType.F32, accumulate ? 1f : 0f, Fp32Compute), Stream);
    }

    /// <inheritdoc/>
    public void MatMulWeightGrad(Tensor x, Tensor dy, Tensor dw, Tensor? dBias)
    {
        var xs = Grad(x); var dys = Grad(dy); var dws = Grad(dw);
        int m = checked((int)xs.Rows), k = xs.Columns, n = dys.Columns;
        if (dys.Rows != m || dws.Rows != n || dws.Columns != k) throw Shape("MatMulWeightGrad", x, dy);
        if (m > 0 && n > 0 && k > 0) _device.Gemm(RowMajorGemm.LinearWeightGrad(xs.Pointer, dys.Pointer, dws.Pointer, m, n, k, GemmDataType.F32, Fp32Compute), Stream);
        if (dBias == null) return;
        var db = Grad(dBias);
        if (db.ElementCount != n) throw Shape("MatMulWeightGrad bias", dBias, dy);
        if (n > 0) _kernels.Rows.ColumnSum(dys.F32, db.F32, m, n, Stream);
    }

    /// <inheritdoc/>
    public void RmsNormBackward(Tensor x, Tensor weight, float eps, Tensor dy, Tensor dx, bool accumulate, Tensor? dWeight)
    {
        var xs = Grad(x); var ws = Weight(weight); var dys = Grad(dy); var dxs = Grad(dx);
        int d = xs.Columns, rows = checked((int)xs.Rows);
        if (ws.ElementCount != d || dys.ElementCount != xs.ElementCount || dxs.ElementCount != xs.ElementCount) throw Shape("RmsNormBackward", x, dy);
        var dws = dWeight == null ? null : Grad(dWeight);
        if (dws != null && dws.ElementCount != d) throw Shape("RmsNormBackward weight gradient", dWeight!, weight);
        var terms = dws == null ? default : Training.Terms.Floats((long)rows * d);
        _kernels.RmsNorm.BackwardRows(xs.F32, ws.F32, dys.F32, dxs.F32, terms, rows, d, eps, accumulate, Stream);
        if (dws != null) _kernels.Rows.ColumnSum(terms, dws.F32, rows, d, Stream);
    }

    /// <inheritdoc/>
    public void HeadNormRopeBackward(Tensor input, int heads, int headDim, Tensor? normWeight, float eps, float ropeTheta,
        int tokensPerSequence, int startPosition, Tensor grad, Tensor? dNormWeight)
    {
        var xs = Grad(input); var gs = Grad(grad);
        if (xs.Columns != heads * headDim || headDim % 2 != 0 || gs.ElementCount != xs.ElementCount) throw Shape("HeadNormRopeBackward", input, grad);
        GpuTensor? ws = null, dws = null;
        if (normWeight != null)
        {
            ws = Weight(normWeight);
            if (ws.ElementCount != headDim) throw Shape("HeadNormRopeBackward norm", normWeight, input);
            if (dNormWeight != null)
            {
                dws = Grad(dNormWeight);
                if (dws.ElementCount != headDim) throw Shape("HeadNormRopeBackward norm gradient", dNormWeight, input);
            }
        }
        var layout = new RopeLayout(checked((int)xs.Rows), heads, headDim, ropeTheta, tokensPerSequence, startPosition);
        int items = checked(layout.Tokens * heads);
        var terms = dws == null ? default : Training.Terms.Floats((long)items * headDim);
        _kernels.Rope.HeadNormRopeBackward(xs.F32, ws is null ? default : ws.F32, gs.F32, terms, eps, layout, Stream);
        if (dws != null) _kernels.Rows.ColumnSum(terms, dws.F32, items, headDim, Stream);
    }

    /// <inheritdoc/>
    public void AttentionForward(Tensor q, Tensor k, Tensor v, int batch, int tokensPerSequence, int heads, int kvHeads, int headDim,
        float scale, Tensor output, Tensor logSumExp)
    {
        var (qs, ks, vs, os, ls) = (Grad(q), Grad(k), Grad(v), Grad(output), Grad(logSumExp));
        var layout = TrainingLayout(qs, ks, vs, os, ls, batch, tokensPerSequence, heads, kvHeads, headDim, scale);
        Training.Attention.TrainingForward(qs.F32, ks.F32, vs.F32, os.F32, ls.F32, layout, Stream);
    }

    /// <inheritdoc/>
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor dOutput, Tensor logSumExp, int batch, int tokensPerSequence,
        int heads, int kvHeads, int headDim, float scale, Tensor dq, Tensor dk, Tensor dv)
    {
        var (qs, ks, vs, os, ls) = (Grad(q), Grad(k), Grad(v), Grad(output), Grad(logSumExp));
        var (dos, dqs, dks, dvs) = (Grad(dOutput), Grad(dq), Grad(dk), Grad(dv));
        var layout = TrainingLayout(qs, ks, vs, os, ls, batch, tokensPerSequence, heads, kvHeads, headDim, scale);
        if (dos.ElementCount != qs.ElementCount || dqs.ElementCount != qs.ElementCount || dks.ElementCount != ks.ElementCount || dvs.ElementCount != vs.ElementCount)
            throw Shape("AttentionBackward", q, dOutput);
        var delta = Training.Delta.Floats(ls.ElementCount);
        Training.Attention.Backward(qs.F32, ks.F32, vs.F32, os.F32, dos.F32, ls.F32, delta, dqs.F32, dks.F32, dvs.F32, layout, Stream);
    }

    static AttentionLayout TrainingLayout(GpuTensor q, GpuTensor k, GpuTensor v, GpuTensor o, GpuTensor lse, int batch, int T, int heads, int kvHeads,
        int headDim, float scale)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || q.Columns != heads * headDim || k.Columns != kvHeads * headDim
            || v.ElementCount != k.ElementCount || q.Rows != (long)batch * T || k.Rows != (long)batch * T || o.ElementCount != q.ElementCount)
            throw Shape("Attention (training)", q, k);
        if (lse.ElementCount != (long)batch * T * heads) throw Shape("Attention (training) log-sum-exp", lse, q);
        return new AttentionLayout(batch, T, 0, T, heads, kvHeads, headDim, scale);
    }

    /// <inheritdoc/>
    public void SwiGluBackward(Tensor gate, Tensor up, Tensor dy, Tensor dGate, Tensor dUp)
    {
        var (gs, us, dys, dgs, dus) = (Grad(gate), Grad(up), Grad(dy), Grad(dGate), Grad(dUp));
        long n = gs.ElementCount;
        if (us.ElementCount != n || dys.ElementCount != n || dgs.ElementCount != n || dus.ElementCount != n) throw Shape("SwiGluBackward", gate, dy);
        _kernels.SwiGlu.Backward(gs.F32, us.F32, dys.F32, dgs.F32, dus.F32, n, Stream);
    }

    /// <inheritdoc/>
    public double GatedResidualBackward(Tensor h, Tensor a, Tensor mlp, float gate, Tensor dOut, Tensor dh, Tensor dLayerOutput)
    {
        var (hs, @as, ms, dos, dhs, dls) = (Grad(h), Grad(a), Grad(mlp), Grad(dOut), Grad(dh), Grad(dLayerOutput));
        long n = hs.ElementCount;
        if (@as.ElementCount != n || ms.ElementCount != n || dos.ElementCount != n || dhs.ElementCount != n || dls.ElementCount != n)
            throw Shape("GatedResidualBackward", h, dOut);
        if (n == 0) return 0;
        int blocks = ResidualKernels.BackwardBlocks(n);
        var partials = Training.Partials.Floats(2 * ResidualKernels.MaxBackwardBlocks);
        _kernels.Residual.Backward(hs.F32, @as.F32, ms.F32, dos.F32, dhs.F32, dls.F32, partials, gate, n, Stream);
        Span<float> host = stackalloc float[2 * blocks];
        _device.CopyToHost(host, partials, Stream);
        // Blocks in order, each block's (hi, lo) pair restoring its double sum to ~48 bits.
        double total = 0;
        for (int b = 0; b < blocks; b++) total += (double)host[2 * b] + host[2 * b + 1];
        return total;
    }

    /// <inheritdoc/>
    public void EmbeddingBackward(ReadOnlySpan<int> ids, Tensor dy, Tensor dTable)
    {
        var dys = Grad(dy); var ts = Grad(dTable);
        int dim = ts.Columns;
        if (dys.Columns != dim || dys.Rows != ids.Length) throw Shape("EmbeddingBackward", dy, dTable);
        for (int t = 0; t < ids.Length; t++)
            if ((uint)ids[t] >= ts.Rows) throw new ArgumentOutOfRangeException(nameof(ids), $"ids[{t}] = {ids[t]} is outside {dTable}");
        if (ids.Length == 0) return;
        var (plan, unique) = EmbeddingKernels.GroupTokens(ids);
        _kernels.Embedding.BackwardGrouped(dys.F32, _indices.Upload(plan), ts.F32, unique, dim, Stream);
    }

    /// <summary>A gradient-side tensor: training runs with fp32 activations and gradients.</summary>
    GpuTensor Grad(Tensor t)
    {
        if (ActivationType != DType.F32)
            throw new NotSupportedException($"the {Name} backward pass needs F32 activations; this backend was created with {ActivationType}");
        return Act(t);
    }

    /// <summary>Kernels and scratch only the backward needs, created on first use so that inference never loads them.</summary>
    sealed class TrainingResources : IDisposable
    {
        public TrainingResources(IGpuDevice device, GpuStream stream)
        {
            Attention = new AttentionKernels(device);
            Terms = new DeviceScratch(device, stream);
            Delta = new DeviceScratch(device, stream);
            Partials = new DeviceScratch(device, stream);
        }

        public AttentionKernels Attention { get; }
        /// <summary>Per-row weight-gradient terms of the norms, summed by column afterwards.</summary>
        public DeviceScratch Terms { get; }
        /// <summary>rowsum(dO∘O) per (row, head) of the attention backward.</summary>
        public DeviceScratch Delta { get; }
        /// <summary>Per-block (hi, lo) sums of the gate gradient.</summary>
        public DeviceScratch Partials { get; }

        public void Dispose()
        {
            Terms.Dispose();
            Delta.Dispose();
            Partials.Dispose();
            Attention.Dispose();
        }
    }
}
