using System.Buffers;
using E3.Interop.Emulator;
using E3.Interop.Gpu;
using E3.Interop.Kernels;

namespace E3.Backends.Gpu;

/// <summary>
/// <see cref="IBackend"/> over an <see cref="IGpuDevice"/>: the real driver ("cuda") or the CPU emulator ("emu").
/// Every operation is queued on one stream, in order; <see cref="Download"/> and <see cref="Synchronize"/> wait.
/// Activations are <see cref="ActivationType"/> (F32 or BF16); weights may be F32 or BF16 and are uploaded once.
/// A weight whose dtype differs from the activations' is converted on the device, since GEMMs and kernels compute with
/// both operands in one dtype: fp32 norms under bf16 activations keep their bf16 copy, bf16 projections under fp32
/// activations (training) are widened into one scratch buffer at each use. Projections go through
/// <see cref="IGpuDevice.Gemm"/> (cuBLAS semantics), attention through an <see cref="IAttentionOp"/>.
/// </summary>
internal sealed partial class GpuBackend : IBackend, IArgMaxBackend, ISamplingBackend, ITopKBackend
{
    readonly IGpuDevice _device;
    readonly bool _ownsDevice;
    readonly OwnedStream _stream;
    readonly GpuKernelSet _kernels;
    readonly DeviceIndexBuffer _indices;
    // The row selections (argmax, top-K) finish with a synchronous download, so one pair of buffers serves them all.
    readonly DeviceIndexBuffer _selectedIds;
    readonly DeviceScratch _selectedValues;
    readonly IAttentionOp _attention;
    DeviceScratch? _widenedMatrix; // see Weight

    /// <summary>Creates a backend on <paramref name="device"/>.</summary>
    /// <param name="device">The device; disposed with the backend when <paramref name="ownsDevice"/>.</param>
    /// <param name="activationType">F32 or BF16: the dtype of every activation, KV cache and logits buffer.</param>
    /// <param name="weightType">When set, every matrix (rank &gt;= 2) given to <see cref="Upload(ReadOnlySpan{byte}, DType, int[], DType)"/>
    /// is stored in this dtype whatever the caller asks; null stores what the caller asks. Vectors (norms, biases) always follow the caller.</param>
    /// <param name="attention">Creates the attention step; null uses <see cref="KernelAttention"/>.</param>
    /// <param name="ownsDevice">Whether <see cref="Dispose"/> also disposes <paramref name="device"/>.</param>
    /// <param name="fp32Compute">How GEMMs over fp32 activations multiply: <see cref="GemmCompute.Fp32"/>, or
    /// <see cref="GemmCompute.FastTf32"/> to run them on the tensor cores with TF32 operands (training's opt-in
    /// <c>--tf32</c>). bf16 GEMMs are unaffected.</param>
    public GpuBackend(IGpuDevice device, DType activationType = DType.BF16, DType? weightType = null,
        Func<GpuBackend, IAttentionOp>? attention = null, bool ownsDevice = true, GemmCompute fp32Compute = GemmCompute.Fp32)
    {
        ArgumentNullException.ThrowIfNull(device);
        Fp32Compute = fp32Compute;
        _device = device;
        _ownsDevice = ownsDevice;
        ActivationType = activationType;
        WeightType = weightType;
        Name = device is EmuGpuDevice ? "emu" : "cuda";
        try
        {
            RequireStorable(activationType, nameof(activationType));
            if (weightType is { } w) RequireStorable(w, nameof(weightType));
            if (fp32Compute is not (GemmCompute.Fp32 or GemmCompute.FastTf32))
                throw new ArgumentOutOfRangeException(nameof(fp32Compute), fp32Compute, "GEMMs over fp32 activations compute as Fp32 or FastTf32");
            _stream = device.CreateOwnedStream();
            _kernels = new GpuKernelSet(device);
            _indices = new DeviceIndexBuffer(device, _stream.Handle);
            _selectedIds = new DeviceIndexBuffer(device, _stream.Handle);
            _selectedValues = new DeviceScratch(device, _stream.Handle);
            _attention = attention?.Invoke(this) ?? new KernelAttention(this);
        }
        catch
        {
            _kernels?.Dispose();
            _stream?.Dispose();
            if (ownsDevice) device.Dispose(); // the caller handed it over; nobody else will release it
            throw;
        }
    }

    /// <summary>"cuda", or "emu" on the emulator.</summary>
    public string Name { get; }

    /// <inheritdoc/>
    public DType ActivationType { get; }

    /// <summary>The dtype matrices are stored in when set (see the constructor).</summary>
    public DType? WeightType { get; }

    /// <summary>How GEMMs over fp32 activations multiply (see the constructor).</summary>
    public GemmCompute Fp32Compute { get; }

    /// <summary>The device this backend runs on.</summary>
    public IGpuDevice Device => _device;

    /// <summary>The stream every operation is queued on.</summary>
    public GpuStream Stream => _stream.Handle;

    /// <inheritdoc/>
    public Tensor Allocate(DType dtype, params int[] shape)
    {
        RequireStorable(dtype, nameof(dtype));
        var t = Create(dtype, shape);
        if (t.SizeInBytes > 0) _device.FillBytesAsync(t.Pointer, 0, t.SizeInBytes, Stream);
        return t;
    }

    /// <inheritdoc/>
    public Tensor Upload(ReadOnlySpan<byte> raw, DType sourceType, int[] shape, DType storeAs)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var store = WeightType is { } w && shape.Length >= 2 ? w : storeAs;
        RequireStorable(store, nameof(storeAs));
        var t = Create(store, shape);
        try
        {
            long n = t.ElementCount;
            if (raw.Length != n * sourceType.SizeInBytes())
                throw new ArgumentException($"{raw.Length} bytes given for {sourceType}[{string.Join(", ", shape)}] ({n * sourceType.SizeInBytes()} expected)", nameof(raw));
            if (sourceType == store)
            {
                CopyToDevice(raw, t.Pointer);
                return t;
            }
            int source = sourceType.SizeInBytes(), stored = store.SizeInBytes();
            float[] values = ArrayPool<float>.Shared.Rent((int)Math.Min(n, HostConversion.ChunkElements));
            byte[] bytes = ArrayPool<byte>.Shared.Rent((int)Math.Min(n, HostConversion.ChunkElements) * stored);
            try
            {
                for (long i0 = 0; i0 < n; i0 += HostConversion.ChunkElements)
                {
                    int len = (int)Math.Min(HostConversion.ChunkElements, n - i0);
                    HostConversion.ToSingle(raw.Slice(checked((int)(i0 * source)), len * source), sourceType, values.AsSpan(0, len));
                    HostConversion.FromSingle(values.AsSpan(0, len), store, bytes.AsSpan(0, len * stored));
                    CopyToDevice(bytes.AsSpan(0, len * stored), t.Pointer.Add(i0 * stored));
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(values);
                ArrayPool<byte>.Shared.Return(bytes);
            }
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public void Upload(ReadOnlySpan<float> values, Tensor dst)
    {
        var t = Own(dst);
        if (values.Length != t.ElementCount) throw new ArgumentException($"{values.Length} values for {t}", nameof(values));
        t.Converted = null;
        int size = t.DType.SizeInBytes();
        byte[] bytes = ArrayPool<byte>.Shared.Rent((int)Math.Min(values.Length, HostConversion.ChunkElements) * size);
        try
        {
            for (int i0 = 0; i0 < values.Length; i0 += HostConversion.ChunkElements)
            {
                int len = Math.Min(HostConversion.ChunkElements, values.Length - i0);
                HostConversion.FromSingle(values.Slice(i0, len), t.DType, bytes.AsSpan(0, len * size));
                CopyToDevice(bytes.AsSpan(0, len * size), t.Pointer.Add((long)i0 * size));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <inheritdoc/>
    public void Download(Tensor src, Span<float> dst)
    {
        var t = Own(src);
        if (dst.Length < t.ElementCount) throw new ArgumentException($"destination holds {dst.Length} values, {t} needs {t.ElementCount}", nameof(dst));
        int size = t.DType.SizeInBytes();
        int count = checked((int)t.ElementCount);
        byte[] bytes = ArrayPool<byte>.Shared.Rent((int)Math.Min(count, HostConversion.ChunkElements) * size);
        try
        {
            for (int i0 = 0; i0 < count; i0 += HostConversion.ChunkElements)
            {
                int len = Math.Min(HostConversion.ChunkElements, count - i0);
                CopyToHost(t.Pointer.Add((long)i0 * size), bytes.AsSpan(0, len * size));
                HostConversion.ToSingle(bytes.AsSpan(0, len * size), t.DType, dst.Slice(i0, len));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <inheritdoc/>
    public void Synchronize() => _stream.Synchronize();

    /// <summary>
    /// A backend on this one's device and context that computes with <paramref name="activationType"/> activations, on its
    /// own stream, so that a frozen model (a distillation teacher) can run the bf16 inference path (bf16 GEMMs, half the
    /// activation bytes) beside an fp32 trainer. This backend reads the sibling's results
    /// where they are (<see cref="Reads"/>). Dispose the sibling before this backend, which may own the device.
    /// </summary>
    public GpuBackend CreateSibling(DType activationType) => new(_device, activationType, WeightType, ownsDevice: false);

    /// <inheritdoc/>
    public bool Reads(Tensor tensor) => tensor is GpuTensor g && ReferenceEquals(g.Owner._device, _device) && !g.IsDisposed;

    /// <summary>
    /// A tensor of this backend or of a sibling on the same device (<see cref="Reads"/>), for an operation that only
    /// reads it. A sibling wrote it on its own stream, which is waited for. Every operation that takes one ends in a
    /// synchronous copy to the host, so its reads are done before the sibling may free or overwrite the tensor.
    /// </summary>
    GpuTensor Shared(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (!Reads(t)) throw new ArgumentException($"{t} does not belong to this {Name} backend or a sibling on its device");
        var g = (GpuTensor)t;
        if (!ReferenceEquals(g.Owner, this)) g.Owner.Synchronize();
        return g;
    }

    /// <inheritdoc/>
    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y)
    {
        // A bf16 table under fp32 activations is read row by row, widened as it is gathered, rather than widened whole
        // through Weight: the fp32 trainer would otherwise convert a 151,936-row vocabulary to fetch B·T rows of it.
        var stored = Own(table);
        bool widenRows = stored.DType == DType.BF16 && ActivationType == DType.F32;
        var tab = widenRows ? stored : Weight(table);
        var o = Act(y);
        int dim = tab.Columns;
        if (o.Columns != dim || o.Rows != ids.Length) throw Shape("Embedding", table, y);
        for (int i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= tab.Rows) throw new ArgumentOutOfRangeException(nameof(ids), $"ids[{i}] = {ids[i]} is outside {table}");
        if (ids.Length == 0) return;
        var d = _indices.Upload(ids);
        if (widenRows) _kernels.Embedding.Forward(tab.BF16, d, o.F32, ids.Length, dim, Stream);
        else if (ActivationType == DType.F32) _kernels.Embedding.Forward(tab.F32, d, o.F32, ids.Length, dim, Stream);
        else _kernels.Embedding.Forward(tab.BF16, d, o.BF16, ids.Length, dim, Stream);
    }

    /// <inheritdoc/>
    public void RmsNorm(Tensor x, Tensor weight, float eps, Tensor y)
    {
        var xs = Act(x); var ws = Weight(weight); var ys = Act(y);
        int d = xs.Columns;
        if (ws.ElementCount != d || ys.ElementCount != xs.ElementCount) throw Shape("RmsNorm", x, weight);
        int rows = checked((int)xs.Rows);
        if (ActivationType == DType.F32) _kernels.RmsNorm.Forward(xs.F32, ws.F32, ys.F32, rows, d, eps, Stream);
        else _kernels.RmsNorm.Forward(xs.BF16, ws.BF16, ys.BF16, rows, d, eps, Stream);
    }

    /// <inheritdoc/>
    public void AddRmsNorm(Tensor x, Tensor delta, Tensor sum, Tensor weight, float eps, Tensor y)
    {
        var xs = Act(x); var ds = Act(delta); var ss = Act(sum); var ws = Weight(weight); var ys = Act(y);
        int d = xs.Columns;
        if (ds.ElementCount != xs.ElementCount || ss.ElementCount != xs.ElementCount || ys.ElementCount != xs.ElementCount || ws.ElementCount != d)
            throw Shape("AddRmsNorm", x, delta);
        int rows = checked((int)xs.Rows);
        if (ActivationType == DType.F32) _kernels.RmsNorm.AddForward(xs.F32, ds.F32, ss.F32, ws.F32, ys.F32, rows, d, eps, Stream);
        else _kernels.RmsNorm.AddForward(xs.BF16, ds.BF16, ss.BF16, ws.BF16, ys.BF16, rows, d, eps, Stream);
    }

    /// <inheritdoc/>
    public void GatedResidual(Tensor h, Tensor a, Tensor mlp, float gate)
    {
        var hs = Act(h); var @as = Act(a); var ms = Act(mlp);
        if (@as.ElementCount != hs.ElementCount || ms.ElementCount != hs.ElementCount) throw Shape("GatedResidual", h, a);
        if (ActivationType == DType.F32) _kernels.Residual.Gated(hs.F32, @as.F32, ms.F32, gate, hs.ElementCount, Stream);
        else _kernels.Residual.Gated(hs.BF16, @as.BF16, ms.BF16, gate, hs.ElementCount, Stream);
    }

    /// <inheritdoc/>
    public void GatedResidualRmsNorm(Tensor h, Tensor a, Tensor mlp, float gate, Tensor weight, float eps, Tensor y)
    {
        var hs = Act(h); var @as = Act(a); var ms = Act(mlp); var ws = Weight(weight); var ys = Act(y);
        int d = hs.Columns;
        if (@as.ElementCount != hs.ElementCount || ms.ElementCount != hs.ElementCount || ys.ElementCount != hs.ElementCount || ws.ElementCount != d)
            throw Shape("GatedResidualRmsNorm", h, a);
        int rows = checked((int)hs.Rows);
        if (ActivationType == DType.F32) _kernels.RmsNorm.GatedResidualForward(hs.F32, @as.F32, ms.F32, gate, ws.F32, ys.F32, rows, d, eps, Stream);
        else _kernels.RmsNorm.GatedResidualForward(hs.BF16, @as.BF16, ms.BF16, gate, ws.BF16, ys.BF16, rows, d, eps, Stream);
    }

    /// <summary>
    /// y = x·wᵀ as one GEMM (<see cref="RowMajorGemm.Linear"/>). A bias is broadcast into y first and added by the
    /// GEMM's epilogue (beta = 1), so a bf16 output is rounded once, as torch's addmm does.
    /// </summary>
    public void MatMul(Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        var xs = Act(x); var ws = Weight(w); var ys = Act(y);
        int k = xs.Columns, m = checked((int)xs.Rows), n = checked((int)ws.Rows);
        if (ws.Columns != k || ys.Columns != n || ys.Rows != m) throw Shape("MatMul", x, w);
        float beta = 0f;
        if (bias != null)
        {
            var bs = Weight(bias);
            if (bs.ElementCount != n) throw Shape("MatMul bias", bias, w);
            if (ActivationType == DType.F32) _kernels.Rows.Broadcast(bs.F32, ys.F32, m, n, Stream);
            else _kernels.Rows.Broadcast(bs.BF16, ys.BF16, m, n, Stream);
            beta = 1f;
        }
        var type = ActivationType == DType.F32 ? GemmDataType.F32 : GemmDataType.BF16;
        if (m == 0 || n == 0) return;
        _device.Gemm(RowMajorGemm.Linear(xs.Pointer, ws.Pointer, ys.Pointer, m, n, k, type, type, beta,
            ActivationType == DType.F32 ? Fp32Compute : GemmCompute.Fp32), Stream);
    }

    /// <inheritdoc/>
    public void HeadNormRope(Tensor x, int heads, int headDim, Tensor? normWeight, float eps, float ropeTheta, int tokensPerSequence, int startPosition)
    {
        var xs = Act(x);
        if (xs.Columns != heads * headDim || headDim % 2 != 0) throw Shape("HeadNormRope", x, x);
        GpuTensor? ws = NormWeight(normWeight, headDim, x);
        var layout = new RopeLayout(checked((int)xs.Rows), heads, headDim, ropeTheta, tokensPerSequence, startPosition);
        if (ActivationType == DType.F32) _kernels.Rope.HeadNormRope(xs.F32, ws is null ? default : ws.F32, eps, layout, Stream);
        else _kernels.Rope.HeadNormRope(xs.BF16, ws is null ? default : ws.BF16, eps, layout, Stream);
    }

    /// <inheritdoc/>
    public void QkNormRope(Tensor q, Tensor k, int heads, int kvHeads, int headDim, Tensor? qNorm, Tensor? kNorm, float eps, float ropeTheta,
        int tokensPerSequence, int startPosition)
    {
        var qs = Act(q); var ks = Act(k);
        if (qs.Columns != heads * headDim || ks.Columns != kvHeads * headDim || ks.Rows != qs.Rows || headDim % 2 != 0) throw Shape("QkNormRope", q, k);
        GpuTensor? qw = NormWeight(qNorm, headDim, q), kw = NormWeight(kNorm, headDim, k);
        var layout = new RopeLayout(checked((int)qs.Rows), heads, headDim, ropeTheta, tokensPerSequence, startPosition);
        if (ActivationType == DType.F32)
            _kernels.Rope.QkNormRope(qs.F32, qw is null ? default : qw.F32, ks.F32, kw is null ? default : kw.F32, kvHeads, eps, layout, Stream);
        else
            _kernels.Rope.QkNormRope(qs.BF16, qw is null ? default : qw.BF16, ks.BF16, kw is null ? default : kw.BF16, kvHeads, eps, layout, Stream);
    }

    GpuTensor? NormWeight(Tensor? weight, int headDim, Tensor x)
    {
        if (weight is null) return null;
        var ws = Weight(weight);
        if (ws.ElementCount != headDim) throw Shape("HeadNormRope norm", weight, x);
        return ws;
    }

    /// <inheritdoc/>
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor kCache, Tensor vCache, int batch, int tokensPerSequence, int startPosition,
        int heads, int kvHeads, int headDim, float scale, Tensor output)
    {
        var qs = Act(q); var ks = Act(k); var vs = Act(v); var kc = Act(kCache); var vc = Act(vCache); var os = Act(output);
        int T = tokensPerSequence, kvw = kvHeads * headDim, qw = heads * headDim;
        if (kc.Rank != 3) throw Shape("Attention cache", kCache, q);
        if (qs.Columns != qw || ks.Columns != kvw || vs.Columns != kvw || qs.Rows != (long)batch * T || kc.Shape[0] != batch
            || kc.Columns != kvw || !vc.Shape.SequenceEqual(kc.Shape) || os.ElementCount != qs.ElementCount || kvHeads <= 0 || heads % kvHeads != 0
            || ks.Rows != qs.Rows || vs.Rows != qs.Rows)
            throw Shape("Attention", q, kCache);
        if (startPosition < 0 || startPosition + T > kc.Shape[1])
            throw new ArgumentOutOfRangeException(nameof(startPosition), $"positions {startPosition}..{startPosition + T - 1} exceed the KV cache capacity {kc.Shape[1]}");
        _attention.Run(new AttentionCall(qs, ks, vs, kc, vc, os, batch, T, startPosition, heads, kvHeads, headDim, scale));
    }

    /// <inheritdoc/>
    public void SwiGlu(Tensor gate, Tensor up, Tensor y)
    {
        var gs = Act(gate); var us = Act(up); var ys = Act(y);
        if (us.ElementCount != gs.ElementCount || ys.ElementCount != gs.ElementCount) throw Shape("SwiGlu", gate, up);
        if (ActivationType == DType.F32) _kernels.SwiGlu.Forward(gs.F32, us.F32, ys.F32, gs.ElementCount, Stream);
        else _kernels.SwiGlu.Forward(gs.BF16, us.BF16, ys.BF16, gs.ElementCount, Stream);
    }

    /// <inheritdoc/>
    public void GatherRows(Tensor src, ReadOnlySpan<int> rows, Tensor dst)
    {
        var s = Act(src); var d = Act(dst);
        int w = s.Columns;
        if (d.Columns != w || d.Rows != rows.Length) throw Shape("GatherRows", src, dst);
        for (int i = 0; i < rows.Length; i++)
            if ((uint)rows[i] >= s.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {rows[i]} outside {src}");
        if (rows.Length == 0) return;
        var indices = _indices.Upload(rows);
        if (ActivationType == DType.F32) _kernels.Rows.Gather(s.F32, indices, d.F32, rows.Length, w, Stream);
        else _kernels.Rows.Gather(s.BF16, indices, d.BF16, rows.Length, w, Stream);
    }

    /// <summary>
    /// ids[r] = argmax of logits row r, computed on the device (kernels/sampling.cu) so only one int per row is
    /// downloaded. Ties go to the lowest index; NaN counts as the largest value (as torch.argmax).
    /// </summary>
    public void ArgMaxRows(Tensor logits, Span<int> ids)
    {
        var ls = Act(logits);
        int rows = checked((int)ls.Rows), vocab = ls.Columns;
        if (ids.Length != rows) throw new ArgumentException($"{ids.Length} ids for the {rows} rows of {logits}", nameof(ids));
        if (rows == 0) return;
        var d = _selectedIds.Reserve(rows);
        if (ActivationType == DType.F32) _kernels.Sampling.ArgMax(ls.F32, vocab, d, rows, vocab, Stream);
        else _kernels.Sampling.ArgMax(ls.BF16, vocab, d, rows, vocab, Stream);
        _device.CopyToHost(ids, d, Stream);
    }

    /// <summary>Draws each row's next token on the device (kernels/sampling.cu, <c>e3_sample</c>): one int per row comes back.</summary>
    public void SampleRows(Tensor logits, in SamplingSettings settings, Span<int> ids)
    {
        settings.Validate();
        var ls = Act(logits);
        int rows = checked((int)ls.Rows), vocab = ls.Columns;
        if (ids.Length != rows) throw new ArgumentException($"{ids.Length} ids for the {rows} rows of {logits}", nameof(ids));
        if (rows == 0) return;
        var d = _selectedIds.Reserve(rows);
        if (ActivationType == DType.F32) _kernels.Sampling.Sample(ls.F32, vocab, d, rows, vocab, settings, Stream);
        else _kernels.Sampling.Sample(ls.BF16, vocab, d, rows, vocab, settings, Stream);
        _device.CopyToHost(ids, d, Stream);
    }

    /// <inheritdoc/>
    public int MaxTopK => SamplingKernels.MaxTopK;

    /// <summary>
    /// The top-K of every logits row on the device (kernels/sampling.cu, <c>e3_topk_logprobs</c>): K indices and
    /// log-probabilities per row come back instead of the row.
    /// </summary>
    public void TopKLogProbs(Tensor logits, Span<int> indices, Span<float> logProbs)
    {
        var ls = Act(logits);
        int rows = checked((int)ls.Rows), vocab = ls.Columns;
        if (rows == 0) return;
        int topK = indices.Length / rows;
        if (indices.Length != rows * topK || topK < 1 || topK > Math.Min(MaxTopK, vocab) || logProbs.Length != indices.Length)
            throw new ArgumentException($"{indices.Length} indices and {logProbs.Length} log-probabilities for the {rows} rows of {logits}: " +
                $"need K in [1, min({MaxTopK}, {vocab})] per row");
        var ids = _selectedIds.Reserve(indices.Length);
        var values = _selectedValues.Floats(logProbs.Length);
        if (ActivationType == DType.F32) _kernels.Sampling.TopKLogProbs(ls.F32, vocab, ids, values, rows, vocab, topK, Stream);
        else _kernels.Sampling.TopKLogProbs(ls.BF16, vocab, ids, values, rows, vocab, topK, Stream);
        _device.CopyToHost(indices, ids, Stream);
        _device.CopyToHost(logProbs, values, Stream);
        for (int r = 0; r < rows; r++)
            if (indices[r * topK] < 0)
                throw new ArgumentException($"logits row {r} holds NaN or an infinity: the model produced a non-finite value");
    }

    /// <summary>Waits for queued work, then releases the training and distillation kernels and scratch, the attention step, kernels, buffers, the stream and (if owned) the device.</summary>
    public void Dispose() => BestEffortRelease.Run(
        _stream.Synchronize,
        () => _training?.Dispose(),
        () => _distillation?.Dispose(),
        _attention.Dispose,
        _indices.Dispose,
        _selectedIds.Dispose,
        _selectedValues.Dispose,
        () => _widenedMatrix?.Dispose(),
        _kernels.Dispose,
        _stream.Dispose,
        () => { if (_ownsDevice) _device.Dispose(); });

    GpuTensor Create(DType dtype, int[] shape)
    {
        long bytes = checked(shape.Aggregate(1L, (p, d) => d >= 0 ? checked(p * d) : throw new ArgumentOutOfRangeException(nameof(shape), $"negative dimension {d} in [{string.Join(", ", shape)}]"))
            * dtype.SizeInBytes());
        var buffer = _device.AllocateBuffer(bytes);
        return new GpuTensor(this, buffer, dtype, shape);
    }

    unsafe void CopyToDevice(ReadOnlySpan<byte> bytes, DevicePtr destination)
    {
        if (bytes.IsEmpty) return; // an empty tensor has no device address to copy to
        fixed (byte* p = bytes)
            _device.CopyToDeviceAsync(destination, p, bytes.Length, Stream);
    }

    unsafe void CopyToHost(DevicePtr source, Span<byte> bytes)
    {
        if (bytes.IsEmpty) return;
        fixed (byte* p = bytes)
        {
            _device.CopyToHostAsync(p, source, bytes.Length, Stream);
            _stream.Synchronize();
        }
    }

    GpuTensor Own(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        return t is GpuTensor g && ReferenceEquals(g.Owner, this) ? g : throw new ArgumentException($"{t} does not belong to this {Name} backend");
    }

    GpuTensor Act(Tensor t)
    {
        var g = Own(t);
        return g.DType == ActivationType ? g : throw new ArgumentException($"{t}: this {Name} backend computes with {ActivationType} activations");
    }

    /// <summary>
    /// The weight in the activation dtype, converted on the device (kernels/convert.cu): training rewrites its weights
    /// every optimizer step, so the conversion must not cross PCIe. A bf16 matrix under fp32 activations (the trainer's
    /// backend) is widened into one scratch buffer at each use and the view is valid until the next call: a kept fp32
    /// copy would cost 4 bytes a parameter (32 GB for an 8B model) against 6 bytes of traffic a parameter a use, under
    /// 1% of a training step whose GEMMs read each matrix a few times over thousands of rows. Every operation reads at
    /// most one matrix through here, so one buffer serves them all. Vectors (norms, biases) are small: their converted
    /// copy is made on first use after each upload and kept.
    /// </summary>
    GpuTensor Weight(Tensor t)
    {
        var g = Own(t);
        if (g.DType == ActivationType) return g;
        if (g.Rank >= 2 && ActivationType == DType.F32)
        {
            var widened = (_widenedMatrix ??= new DeviceScratch(_device, Stream)).Floats(g.ElementCount);
            if (g.ElementCount > 0) _kernels.Convert.ToF32(g.BF16, widened, g.ElementCount, Stream);
            return GpuTensor.View(this, widened.Raw, DType.F32, g.Shape);
        }
        if (g.Converted is { } ready) return ready;
        var converted = Create(ActivationType, g.Shape);
        if (g.ElementCount > 0)
        {
            if (ActivationType == DType.F32) _kernels.Convert.ToF32(g.BF16, converted.F32, g.ElementCount, Stream);
            else _kernels.Convert.ToBf16(g.F32, converted.BF16, g.ElementCount, Stream);
        }
        g.Converted = converted;
        return converted;
    }

    static void RequireStorable(DType dtype, string name)
    {
        if (dtype is not (DType.F32 or DType.BF16))
            throw new ArgumentOutOfRangeException(name, dtype, "the gpu backend stores F32 or BF16 tensors");
    }

    static ArgumentException Shape(string op, Tensor a, Tensor b) => new($"{op}: incompatible shapes {a} and {b}");
}
