using System.Runtime.InteropServices;
using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using E3.Backends.Cpu.Attention;

namespace E3.Backends.Cpu;

// The backward pass on the CPU. Every sum over rows is either done by one thread in row order or split into per-row
// partials that are then reduced in a fixed order, so gradients do not depend on scheduling.
internal sealed unsafe partial class CpuBackend : ITrainingBackend
{
    public void Copy(Tensor src, Tensor dst)
    {
        var s = F32(src); var d = F32(dst);
        if (s.ElementCount != d.ElementCount) throw Shape("Copy", src, dst);
        new ReadOnlySpan<float>(s.F32, checked((int)s.ElementCount)).CopyTo(d.AsSpan());
    }

    public void Clear(Tensor t)
    {
        var c = Cpu(t);
        NativeMemory.Clear(c.Data, checked((nuint)c.SizeInBytes));
    }

    public void AddInPlace(Tensor y, Tensor x)
    {
        var ys = F32(y); var xs = F32(x);
        if (ys.ElementCount != xs.ElementCount) throw Shape("AddInPlace", y, x);
        TensorPrimitives.Add(ys.AsSpan(), xs.AsSpan(), ys.AsSpan());
    }

    public void MatMulInputGrad(Tensor dy, Tensor w, Tensor dx, bool accumulate)
    {
        var dys = F32(dy); var wt = Cpu(w); var dxs = F32(dx);
        int m = checked((int)dys.Rows), n = dys.Columns, k = wt.Columns;
        if (wt.Rows != n || dxs.Rows != m || dxs.Columns != k) throw Shape("MatMulInputGrad", dy, w);
        if (wt.DType == DType.BF16) CpuGemm.MatMul(dys.F32, m, n, wt.U16, k, dxs.F32, accumulate);
        else CpuGemm.MatMul(dys.F32, m, n, wt.F32, k, dxs.F32, accumulate);
    }

    public void MatMulWeightGrad(Tensor x, Tensor dy, Tensor dw, Tensor? dBias)
    {
        var xs = F32(x); var dys = F32(dy); var dws = F32(dw);
        int m = checked((int)xs.Rows), k = xs.Columns, n = dys.Columns;
        if (dys.Rows != m || dws.Rows != n || dws.Columns != k) throw Shape("MatMulWeightGrad", x, dy);
        CpuGemm.MatMulTransA(xs.F32, m, k, dys.F32, n, dws.F32, true);
        if (dBias == null) return;
        var db = F32(dBias);
        if (db.ElementCount != n) throw Shape("MatMulWeightGrad bias", dBias, dy);
        var acc = db.AsSpan();
        for (int r = 0; r < m; r++) TensorPrimitives.Add(acc, new ReadOnlySpan<float>(dys.F32 + (long)r * n, n), acc);
    }

    public void RmsNormBackward(Tensor x, Tensor weight, float eps, Tensor dy, Tensor dx, bool accumulate, Tensor? dWeight)
    {
        var xs = F32(x); var ws = F32(weight); var dys = F32(dy); var dxs = F32(dx);
        int d = xs.Columns;
        if (ws.ElementCount != d || dys.ElementCount != xs.ElementCount || dxs.ElementCount != xs.ElementCount) throw Shape("RmsNormBackward", x, dy);
        float* xp = xs.F32, wp = ws.F32, dyp = dys.F32, dxp = dxs.F32;
        // Per-row dy·x̂ partials for the weight gradient, reduced below in row order.
        float[]? partial = dWeight == null ? null : ArrayPool<float>.Shared.Rent(checked((int)xs.ElementCount));
        ForRows(xs.Rows, d, r =>
        {
            float* dxr = dxp + r * d;
            float[] rented = ArrayPool<float>.Shared.Rent(d);
            var g = rented.AsSpan(0, d);
            NormRowBackward(xp + r * d, wp, dyp + r * d, d, eps, g,
                partial == null ? default : partial.AsSpan((int)(r * d), d));
            var dst = new Span<float>(dxr, d);
            if (accumulate) TensorPrimitives.Add(dst, g, dst); else g.CopyTo(dst);
            ArrayPool<float>.Shared.Return(rented);
        });
        if (partial == null) return;
        ReduceRows(partial, xs.Rows, d, F32(dWeight!));
        ArrayPool<float>.Shared.Return(partial);
    }

    /// <summary>
    /// ∂/∂x of y = w·x·r with r = (mean(x²) + eps)^−½: dx = r·(dy·w) − x·r³·Σ(dy·w·x)/d. Writes dy·x̂ into dyXHat when it is not empty.
    /// </summary>
    static void NormRowBackward(float* x, float* w, float* dy, int d, float eps, Span<float> dx, Span<float> dyXHat)
    {
        var xs = new ReadOnlySpan<float>(x, d);
        var dys = new ReadOnlySpan<float>(dy, d);
        float r = 1f / MathF.Sqrt(TensorPrimitives.Dot(xs, xs) / d + eps);
        if (!dyXHat.IsEmpty)
        {
            TensorPrimitives.Multiply(dys, xs, dyXHat);
            TensorPrimitives.Multiply(dyXHat, r, dyXHat);
        }
        TensorPrimitives.Multiply(dys, new ReadOnlySpan<float>(w, d), dx);
        float dot = TensorPrimitives.Dot(dx, xs);
        float c = r * r * r * dot / d;
        TensorPrimitives.Multiply(dx, r, dx);
        TensorPrimitives.MultiplyAdd(xs, -c, dx, dx);
    }

    /// <summary>acc[j] += Σ_r partial[r·width + j] over the first <paramref name="rows"/> rows, summed in row order.</summary>
    static void ReduceRows(float[] partial, long rows, int width, CpuTensor acc)
    {
        if (acc.ElementCount != width) throw new ArgumentException($"gradient {acc} does not hold {width} values");
        var a = acc.AsSpan();
        for (int r = 0; r < rows; r++) TensorPrimitives.Add(a, partial.AsSpan(r * width, width), a);
    }

    public void HeadNormRopeBackward(Tensor input, int heads, int headDim, Tensor? normWeight, float eps, float ropeTheta,
        int tokensPerSequence, int startPosition, Tensor grad, Tensor? dNormWeight)
    {
        var xs = F32(input); var gs = F32(grad);
        if (xs.Columns != heads * headDim || headDim % 2 != 0 || gs.ElementCount != xs.ElementCount) throw Shape("HeadNormRopeBackward", input, grad);
        float* wp = null;
        if (normWeight != null)
        {
            var ws = F32(normWeight);
            if (ws.ElementCount != headDim) throw Shape("HeadNormRopeBackward norm", normWeight, input);
            wp = ws.F32;
        }
        int rows = checked((int)xs.Rows), width = xs.Columns, half = headDim / 2;
        var table = _rope.Get(ropeTheta, headDim, startPosition + tokensPerSequence);
        float* xp = xs.F32, gp = gs.F32;
        float[]? partial = dNormWeight != null && wp != null ? ArrayPool<float>.Shared.Rent(checked(rows * heads * headDim)) : null;
        ForRows(rows, width, r =>
        {
            int pos = startPosition + (int)(r % tokensPerSequence);
            var cos = table.Cos(pos);
            var sin = table.Sin(pos);
            float[] rented = ArrayPool<float>.Shared.Rent(headDim);
            var dn = rented.AsSpan(0, headDim);
            for (int hd = 0; hd < heads; hd++)
            {
                float* g = gp + r * width + hd * headDim;
                // The rotation is orthogonal: its backward is the rotation by −angle.
                for (int i = 0; i < half; i++)
                {
                    float g1 = g[i], g2 = g[i + half];
                    dn[i] = g1 * cos[i] + g2 * sin[i];
                    dn[i + half] = g2 * cos[i] - g1 * sin[i];
                }
                var dst = new Span<float>(g, headDim);
                if (wp == null) { dn.CopyTo(dst); continue; }
                fixed (float* dnp = dn)
                {
                    var slot = partial == null ? default : partial.AsSpan((int)((r * heads + hd) * headDim), headDim);
                    NormRowBackward(xp + r * width + hd * headDim, wp, dnp, headDim, eps, dst, slot);
                }
            }
            ArrayPool<float>.Shared.Return(rented);
        });
        if (partial == null) return;
        ReduceRows(partial, (long)rows * heads, headDim, F32(dNormWeight!));
        ArrayPool<float>.Shared.Return(partial);
    }

    public void AttentionForward(Tensor q, Tensor k, Tensor v, int batch, int tokensPerSequence, int heads, int kvHeads, int headDim,
        float scale, Tensor output, Tensor logSumExp)
    {
        var qs = F32(q); var ks = F32(k); var vs = F32(v); var os = F32(output); var ls = F32(logSumExp);
        int T = tokensPerSequence;
        CheckAttention(qs, ks, vs, os, batch, T, heads, kvHeads, headDim);
        if (ls.ElementCount != (long)batch * T * heads) throw Shape("AttentionForward log-sum-exp", logSumExp, q);
        CausalAttention.Forward(qs.F32, ks.F32, vs.F32, os.F32, ls.F32, new(batch, T, heads, kvHeads, headDim, scale), _threads);
    }

    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor dOutput, Tensor logSumExp, int batch, int tokensPerSequence,
        int heads, int kvHeads, int headDim, float scale, Tensor dq, Tensor dk, Tensor dv)
    {
        var qs = F32(q); var ks = F32(k); var vs = F32(v); var os = F32(output); var dos = F32(dOutput); var ls = F32(logSumExp);
        var dqs = F32(dq); var dks = F32(dk); var dvs = F32(dv);
        int T = tokensPerSequence;
        CheckAttention(qs, ks, vs, os, batch, T, heads, kvHeads, headDim);
        if (dos.ElementCount != qs.ElementCount || dqs.ElementCount != qs.ElementCount || dks.ElementCount != ks.ElementCount
            || dvs.ElementCount != vs.ElementCount || ls.ElementCount != (long)batch * T * heads)
            throw Shape("AttentionBackward", q, dOutput);
        CausalAttention.Backward(qs.F32, ks.F32, vs.F32, os.F32, dos.F32, ls.F32, new(batch, T, heads, kvHeads, headDim, scale),
            dqs.F32, dks.F32, dvs.F32, _threads);
    }

    static void CheckAttention(CpuTensor q, CpuTensor k, CpuTensor v, CpuTensor o, int batch, int T, int heads, int kvHeads, int headDim)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || q.Columns != heads * headDim || k.Columns != kvHeads * headDim
            || v.ElementCount != k.ElementCount || q.Rows != (long)batch * T || k.Rows != (long)batch * T || o.ElementCount != q.ElementCount)
            throw Shape("Attention (training)", q, k);
    }

    public void SwiGluBackward(Tensor gate, Tensor up, Tensor dy, Tensor dGate, Tensor dUp)
    {
        var gs = F32(gate); var us = F32(up); var dys = F32(dy); var dgs = F32(dGate); var dus = F32(dUp);
        long n = gs.ElementCount;
        if (us.ElementCount != n || dys.ElementCount != n || dgs.ElementCount != n || dus.ElementCount != n) throw Shape("SwiGluBackward", gate, dy);
        int d = gs.Columns;
        float* gp = gs.F32, upp = us.F32, dyp = dys.F32, dgp = dgs.F32, dup = dus.F32;
        ForRows(gs.Rows, d, r => SwiGluBackwardRow(gp + r * d, upp + r * d, dyp + r * d, dgp + r * d, dup + r * d, d));
    }

    /// <summary>dUp = dy·silu(g); dGate = dy·up·silu'(g) with silu'(g) = σ(g)·(1 + g·(1 − σ(g))).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void SwiGluBackwardRow(float* g, float* up, float* dy, float* dGate, float* dUp, int d)
    {
        int w = Vector<float>.Count, i = 0;
        var one = Vector<float>.One;
        for (; i + w <= d; i += w)
        {
            var gv = Vector.Load(g + i);
            var dyv = Vector.Load(dy + i);
            var sig = one / (one + Vector.Exp(-gv));
            (dyv * gv * sig).Store(dUp + i);
            (dyv * Vector.Load(up + i) * sig * (one + gv * (one - sig))).Store(dGate + i);
        }
        for (; i < d; i++)
        {
            float gi = g[i], sig = 1f / (1f + MathF.Exp(-gi));
            dUp[i] = dy[i] * gi * sig;
            dGate[i] = dy[i] * up[i] * sig * (1f + gi * (1f - sig));
        }
    }

    public double GatedResidualBackward(Tensor h, Tensor a, Tensor mlp, float gate, Tensor dOut, Tensor dh, Tensor dLayerOutput)
    {
        var hs = F32(h); var @as = F32(a); var ms = F32(mlp); var dos = F32(dOut); var dhs = F32(dh); var dls = F32(dLayerOutput);
        long n = hs.ElementCount;
        if (@as.ElementCount != n || ms.ElementCount != n || dos.ElementCount != n || dhs.ElementCount != n || dls.ElementCount != n)
            throw Shape("GatedResidualBackward", h, dOut);
        int d = hs.Columns;
        float* hp = hs.F32, ap = @as.F32, mp = ms.F32, dop = dos.F32, dhp = dhs.F32, dlp = dls.F32;
        var rowSums = new double[hs.Rows];
        ForRows(hs.Rows, d, r =>
        {
            double sum = 0;
            for (long i = r * d; i < (r + 1) * d; i++)
            {
                float g = dop[i];
                sum += (double)g * ((double)ap[i] + mp[i] - hp[i]);
                dlp[i] = gate * g;
                dhp[i] = (1f - gate) * g;
            }
            rowSums[r] = sum;
        });
        double total = 0;
        foreach (double s in rowSums) total += s;
        return total;
    }

    public void EmbeddingBackward(ReadOnlySpan<int> ids, Tensor dy, Tensor dTable)
    {
        var dys = F32(dy); var ts = F32(dTable);
        int h = ts.Columns;
        if (dys.Columns != h || dys.Rows != ids.Length) throw Shape("EmbeddingBackward", dy, dTable);
        for (int t = 0; t < ids.Length; t++)
        {
            if ((uint)ids[t] >= ts.Rows) throw new ArgumentOutOfRangeException(nameof(ids), $"id {ids[t]} outside {dTable}");
            var row = new Span<float>(ts.F32 + (long)ids[t] * h, h);
            TensorPrimitives.Add(row, new ReadOnlySpan<float>(dys.F32 + (long)t * h, h), row);
        }
    }
}
