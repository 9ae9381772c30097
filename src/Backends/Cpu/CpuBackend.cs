using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using E3.Backends.Cpu.Attention;
using E3.Backends.Cpu.Threading;
using E3.Backends.Numerics;

namespace E3.Backends.Cpu;

/// <summary>
/// The CPU backend: fp32 activations, fp32 or bf16 weights, SIMD through System.Numerics.Tensors and the
/// blocked GEMMs in <see cref="CpuGemm"/>, rows spread over all cores.
/// </summary>
internal sealed unsafe partial class CpuBackend : IBackend
{
    /// <summary>Row work below this many elements stays on the calling thread: the fork/join would cost more.</summary>
    const long ParallelThreshold = 1 << 15;

    /// <summary>
    /// Query rows from which attention over the KV cache takes the tiled path (scores as register-blocked tile products
    /// against a transposed copy of the keys). Decode keeps the direct path: with one query per head, transposing the
    /// whole cache would triple the memory traffic of a step that is bound by it.
    /// </summary>
    const int TiledAttentionRows = 16;

    readonly RopeTables _rope = new();
    readonly int _threads;

    public CpuBackend(int threads = 0)
    {
        _threads = threads > 0 ? threads : Environment.ProcessorCount;
    }

    public string Name => "cpu";
    public DType ActivationType => DType.F32;
    public int Threads => _threads;

    public Tensor Allocate(DType dtype, params int[] shape) => new CpuTensor(dtype, shape);

    public Tensor Upload(ReadOnlySpan<byte> raw, DType sourceType, int[] shape, DType storeAs)
    {
        var t = new CpuTensor(storeAs, shape);
        long n = t.ElementCount;
        if (raw.Length != n * sourceType.SizeInBytes())
        {
            t.Dispose();
            throw new ArgumentException($"{raw.Length} bytes given for {sourceType}[{string.Join(", ", shape)}] ({n * sourceType.SizeInBytes()} expected)");
        }
        fixed (byte* src = raw)
        {
            if (sourceType == storeAs)
            {
                Buffer.MemoryCopy(src, t.Data, t.SizeInBytes, raw.Length);
                return t;
            }
            // Convert in chunks so a 150k x 4k embedding never needs a second full-size buffer.
            const int Chunk = 1 << 16;
            var buf = new float[(int)Math.Min(n, Chunk)];
            for (long i0 = 0; i0 < n; i0 += Chunk)
            {
                int len = (int)Math.Min(Chunk, n - i0);
                var chunk = buf.AsSpan(0, len);
                switch (sourceType)
                {
                    case DType.F32: new ReadOnlySpan<float>((float*)src + i0, len).CopyTo(chunk); break;
                    case DType.BF16: BFloat16.ToSingle(new ReadOnlySpan<ushort>((ushort*)src + i0, len), chunk); break;
                    case DType.F16: for (int i = 0; i < len; i++) chunk[i] = (float)((Half*)src)[i0 + i]; break;
                }
                switch (storeAs)
                {
                    case DType.F32: chunk.CopyTo(new Span<float>(t.F32 + i0, len)); break;
                    case DType.BF16: BFloat16.FromSingle(chunk, new Span<ushort>(t.U16 + i0, len)); break;
                    case DType.F16: for (int i = 0; i < len; i++) ((Half*)t.U16)[i0 + i] = (Half)chunk[i]; break;
                }
            }
        }
        return t;
    }

    public void Upload(ReadOnlySpan<float> values, Tensor dst)
    {
        var t = Cpu(dst);
        if (values.Length != t.ElementCount) throw new ArgumentException($"{values.Length} values for {t}");
        switch (t.DType)
        {
            case DType.F32: values.CopyTo(t.AsSpan()); break;
            case DType.BF16: BFloat16.FromSingle(values, new Span<ushort>(t.U16, values.Length)); break;
            case DType.F16: for (int i = 0; i < values.Length; i++) ((Half*)t.U16)[i] = (Half)values[i]; break;
        }
    }

    public void Download(Tensor src, Span<float> dst)
    {
        var t = Cpu(src);
        if (dst.Length < t.ElementCount) throw new ArgumentException($"destination holds {dst.Length} values, {t} needs {t.ElementCount}");
        switch (t.DType)
        {
            case DType.F32: t.AsSpan().CopyTo(dst); break;
            case DType.BF16: BFloat16.ToSingle(new ReadOnlySpan<ushort>(t.U16, (int)t.ElementCount), dst); break;
            case DType.F16: for (int i = 0; i < t.ElementCount; i++) dst[i] = (float)((Half*)t.U16)[i]; break;
        }
    }

    public void Synchronize() { }

    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y)
    {
        var tab = Cpu(table);
        var o = F32(y);
        int h = tab.Columns;
        if (o.Columns != h || o.Rows != ids.Length) throw Shape("Embedding", table, y);
        for (int t = 0; t < ids.Length; t++)
        {
            var dst = new Span<float>(o.F32 + (long)t * h, h);
            long row = (long)ids[t] * h;
            if (tab.DType == DType.F32) new ReadOnlySpan<float>(tab.F32 + row, h).CopyTo(dst);
            else BFloat16.ToSingle(new ReadOnlySpan<ushort>(tab.U16 + row, h), dst);
        }
    }

    public void RmsNorm(Tensor x, Tensor weight, float eps, Tensor y)
    {
        var xs = F32(x); var ws = F32(weight); var ys = F32(y);
        int d = xs.Columns;
        if (ws.ElementCount != d || ys.ElementCount != xs.ElementCount) throw Shape("RmsNorm", x, weight);
        float* xp = xs.F32, wp = ws.F32, yp = ys.F32;
        ForRows(xs.Rows, d, r => NormRow(xp + r * d, wp, yp + r * d, d, eps));
    }

    public void AddRmsNorm(Tensor x, Tensor delta, Tensor sum, Tensor weight, float eps, Tensor y)
    {
        var xs = F32(x); var ds = F32(delta); var ss = F32(sum); var ws = F32(weight); var ys = F32(y);
        int d = xs.Columns;
        if (ds.ElementCount != xs.ElementCount || ss.ElementCount != xs.ElementCount || ys.ElementCount != xs.ElementCount || ws.ElementCount != d)
            throw Shape("AddRmsNorm", x, delta);
        float* xp = xs.F32, dp = ds.F32, sp = ss.F32, wp = ws.F32, yp = ys.F32;
        ForRows(xs.Rows, d, r =>
        {
            var s = new Span<float>(sp + r * d, d);
            TensorPrimitives.Add(new ReadOnlySpan<float>(xp + r * d, d), new ReadOnlySpan<float>(dp + r * d, d), s);
            NormRow(sp + r * d, wp, yp + r * d, d, eps);
        });
    }

    public void GatedResidual(Tensor h, Tensor a, Tensor mlp, float gate)
    {
        var hs = F32(h); var @as = F32(a); var ms = F32(mlp);
        if (@as.ElementCount != hs.ElementCount || ms.ElementCount != hs.ElementCount) throw Shape("GatedResidual", h, a);
        int d = hs.Columns;
        float* hp = hs.F32, ap = @as.F32, mp = ms.F32;
        ForRows(hs.Rows, d, r => GatedResidualRow(hp + r * d, ap + r * d, mp + r * d, d, gate));
    }

    public void GatedResidualRmsNorm(Tensor h, Tensor a, Tensor mlp, float gate, Tensor weight, float eps, Tensor y)
    {
        var hs = F32(h); var @as = F32(a); var ms = F32(mlp); var ws = F32(weight); var ys = F32(y);
        int d = hs.Columns;
        if (@as.ElementCount != hs.ElementCount || ms.ElementCount != hs.ElementCount || ys.ElementCount != hs.ElementCount || ws.ElementCount != d)
            throw Shape("GatedResidualRmsNorm", h, a);
        float* hp = hs.F32, ap = @as.F32, mp = ms.F32, wp = ws.F32, yp = ys.F32;
        // Row by row, while the row is still in cache: the same arithmetic as the two unfused calls.
        ForRows(hs.Rows, d, r =>
        {
            GatedResidualRow(hp + r * d, ap + r * d, mp + r * d, d, gate);
            NormRow(hp + r * d, wp, yp + r * d, d, eps);
        });
    }

    static void GatedResidualRow(float* h, float* a, float* m, int d, float gate)
    {
        var hr = new Span<float>(h, d);
        var ar = new ReadOnlySpan<float>(a, d);
        var mr = new ReadOnlySpan<float>(m, d);
        if (gate == 1f)
        {
            TensorPrimitives.Add(ar, mr, hr);
            return;
        }
        for (int i = 0; i < d; i++) hr[i] += gate * (ar[i] + mr[i] - hr[i]);
    }

    public void MatMul(Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        var xs = F32(x); var wt = Cpu(w); var ys = F32(y);
        int k = xs.Columns, m = checked((int)xs.Rows), n = checked((int)wt.Rows);
        if (wt.Columns != k || ys.Columns != n || ys.Rows != m) throw Shape("MatMul", x, w);
        float* b = null;
        if (bias != null)
        {
            var bs = F32(bias);
            if (bs.ElementCount != n) throw Shape("MatMul bias", bias, w);
            b = bs.F32;
        }
        if (wt.DType == DType.BF16) CpuGemm.MatMulTransB(xs.F32, m, k, wt.U16, n, ys.F32, b, false);
        else CpuGemm.MatMulTransB(xs.F32, m, k, wt.F32, n, ys.F32, b, false);
    }

    public void QkNormRope(Tensor q, Tensor k, int heads, int kvHeads, int headDim, Tensor? qNorm, Tensor? kNorm, float eps, float ropeTheta,
        int tokensPerSequence, int startPosition)
    {
        HeadNormRope(q, heads, headDim, qNorm, eps, ropeTheta, tokensPerSequence, startPosition);
        HeadNormRope(k, kvHeads, headDim, kNorm, eps, ropeTheta, tokensPerSequence, startPosition);
    }

    public void HeadNormRope(Tensor x, int heads, int headDim, Tensor? normWeight, float eps, float ropeTheta, int tokensPerSequence, int startPosition)
    {
        var xs = F32(x);
        if (xs.Columns != heads * headDim || headDim % 2 != 0) throw Shape("HeadNormRope", x, x);
        float* wp = null;
        if (normWeight != null)
        {
            var ws = F32(normWeight);
            if (ws.ElementCount != headDim) throw Shape("HeadNormRope norm", normWeight, x);
            wp = ws.F32;
        }
        int rows = checked((int)xs.Rows);
        var table = _rope.Get(ropeTheta, headDim, startPosition + tokensPerSequence);
        float* xp = xs.F32;
        int half = headDim / 2, width = xs.Columns;
        ForRows(rows, width, r =>
        {
            int pos = startPosition + (int)(r % tokensPerSequence);
            var cos = table.Cos(pos);
            var sin = table.Sin(pos);
            for (int hd = 0; hd < heads; hd++)
            {
                float* v = xp + r * width + hd * headDim;
                if (wp != null) NormRow(v, wp, v, headDim, eps);
                for (int i = 0; i < half; i++)
                {
                    float x1 = v[i], x2 = v[i + half];
                    v[i] = x1 * cos[i] - x2 * sin[i];
                    v[i + half] = x2 * cos[i] + x1 * sin[i];
                }
            }
        });
    }

    public void Attention(Tensor q, Tensor k, Tensor v, Tensor kCache, Tensor vCache, int batch, int tokensPerSequence, int startPosition,
        int heads, int kvHeads, int headDim, float scale, Tensor output)
    {
        var qs = F32(q); var ks = F32(k); var vs = F32(v); var kc = F32(kCache); var vc = F32(vCache); var os = F32(output);
        int T = tokensPerSequence, kvw = kvHeads * headDim, qw = heads * headDim;
        int capacity = kc.Rank == 3 ? kc.Shape[1] : throw Shape("Attention cache", kCache, q);
        if (qs.Columns != qw || ks.Columns != kvw || vs.Columns != kvw || qs.Rows != (long)batch * T || kc.Shape[0] != batch
            || kc.Columns != kvw || vc.ElementCount != kc.ElementCount || os.ElementCount != qs.ElementCount || heads % kvHeads != 0)
            throw Shape("Attention", q, kCache);
        if (startPosition + T > capacity)
            throw new ArgumentOutOfRangeException(nameof(startPosition), $"positions {startPosition}..{startPosition + T - 1} exceed the KV cache capacity {capacity}");

        float* kcp = kc.F32, vcp = vc.F32, kp = ks.F32, vp = vs.F32, qp = qs.F32, op = os.F32;
        for (int b = 0; b < batch; b++)
        {
            long dst = ((long)b * capacity + startPosition) * kvw;
            Buffer.MemoryCopy(kp + (long)b * T * kvw, kcp + dst, (long)T * kvw * 4, (long)T * kvw * 4);
            Buffer.MemoryCopy(vp + (long)b * T * kvw, vcp + dst, (long)T * kvw * 4, (long)T * kvw * 4);
        }

        if (T >= TiledAttentionRows)
        {
            CausalAttention.Forward(qp, kcp, vcp, op, null,
                new CausalAttention.Shape(batch, T, heads, kvHeads, headDim, scale) { Start = startPosition, KeyStride = capacity }, _threads);
            return;
        }

        int group = heads / kvHeads;
        int span = startPosition + T;
        // One work item per (sequence, head, block of queries): enough parallelism for decode (T = 1) and prefill alike.
        const int QueryBlock = 16;
        int qBlocks = (T + QueryBlock - 1) / QueryBlock;
        int items = batch * heads * qBlocks;
        ComputePool.Shared.For(items, _threads, item =>
        {
            float[] scores = ArrayPool<float>.Shared.Rent(span);
            int qb = item % qBlocks, hd = item / qBlocks % heads, b = item / qBlocks / heads;
            int kvh = hd / group;
            float* kBase = kcp + (long)b * capacity * kvw + kvh * headDim;
            float* vBase = vcp + (long)b * capacity * kvw + kvh * headDim;
            int t1 = Math.Min(T, (qb + 1) * QueryBlock);
            for (int t = qb * QueryBlock; t < t1; t++)
            {
                long row = (long)b * T + t;
                var qv = new ReadOnlySpan<float>(qp + row * qw + hd * headDim, headDim);
                int keys = startPosition + t + 1;
                var s = scores.AsSpan(0, keys);
                for (int j = 0; j < keys; j++)
                    s[j] = TensorPrimitives.Dot(qv, new ReadOnlySpan<float>(kBase + (long)j * kvw, headDim)) * scale;
                float max = TensorPrimitives.Max(s);
                float sum = 0;
                for (int j = 0; j < keys; j++) { float e = MathF.Exp(s[j] - max); s[j] = e; sum += e; }
                float inv = 1f / sum;
                var o = new Span<float>(op + row * qw + hd * headDim, headDim);
                o.Clear();
                for (int j = 0; j < keys; j++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(vBase + (long)j * kvw, headDim), s[j] * inv, o, o);
            }
            ArrayPool<float>.Shared.Return(scores);
        });
    }

    public void SwiGlu(Tensor gate, Tensor up, Tensor y)
    {
        var gs = F32(gate); var us = F32(up); var ys = F32(y);
        if (us.ElementCount != gs.ElementCount || ys.ElementCount != gs.ElementCount) throw Shape("SwiGlu", gate, up);
        int d = gs.Columns;
        float* gp = gs.F32, upp = us.F32, yp = ys.F32;
        ForRows(gs.Rows, d, r =>
        {
            var g = new ReadOnlySpan<float>(gp + r * d, d);
            var yr = new Span<float>(yp + r * d, d);
            // silu(g) = g * sigmoid(g); sigmoid goes to a scratch row first because y may be g itself.
            float[] rented = System.Buffers.ArrayPool<float>.Shared.Rent(d);
            var sig = rented.AsSpan(0, d);
            TensorPrimitives.Sigmoid(g, sig);
            TensorPrimitives.Multiply(sig, g, sig);
            TensorPrimitives.Multiply(sig, new ReadOnlySpan<float>(upp + r * d, d), yr);
            System.Buffers.ArrayPool<float>.Shared.Return(rented);
        });
    }

    public void GatherRows(Tensor src, ReadOnlySpan<int> rows, Tensor dst)
    {
        var s = F32(src); var d = F32(dst);
        int w = s.Columns;
        if (d.Columns != w || d.Rows != rows.Length) throw Shape("GatherRows", src, dst);
        for (int i = 0; i < rows.Length; i++)
        {
            if ((uint)rows[i] >= s.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {rows[i]} outside {src}");
            new ReadOnlySpan<float>(s.F32 + (long)rows[i] * w, w).CopyTo(new Span<float>(d.F32 + (long)i * w, w));
        }
    }

    public void Dispose() { }

    /// <summary>RMSNorm of one row in fp32: w * x * rsqrt(mean(x²) + eps), as transformers computes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void NormRow(float* x, float* w, float* y, int d, float eps)
    {
        var xs = new ReadOnlySpan<float>(x, d);
        float meanSq = TensorPrimitives.Dot(xs, xs) / d;
        float inv = 1f / MathF.Sqrt(meanSq + eps);
        var ys = new Span<float>(y, d);
        TensorPrimitives.Multiply(xs, inv, ys);
        TensorPrimitives.Multiply(ys, new ReadOnlySpan<float>(w, d), ys);
    }

    void ForRows(long rows, int width, Action<long> body)
    {
        if (rows * width < ParallelThreshold || _threads == 1 || rows == 1)
        {
            for (long r = 0; r < rows; r++) body(r);
            return;
        }
        ComputePool.Shared.ForRanges(rows, _threads, (start, end) =>
        {
            for (long r = start; r < end; r++) body(r);
        });
    }

    static CpuTensor Cpu(Tensor t) => t as CpuTensor ?? throw new ArgumentException($"{t} does not belong to the cpu backend");

    static CpuTensor F32(Tensor t)
    {
        var c = Cpu(t);
        return c.DType == DType.F32 ? c : throw new ArgumentException($"{t}: the cpu backend computes with F32 activations");
    }

    static ArgumentException Shape(string op, Tensor a, Tensor b) => new($"{op}: incompatible shapes {a} and {b}");
}
