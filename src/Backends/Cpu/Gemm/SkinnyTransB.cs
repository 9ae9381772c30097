using System.Numerics;
using System.Runtime.CompilerServices;
using E3.Backends.Cpu.Threading;

namespace E3.Backends.Cpu.Gemm;

/// <summary>
/// y[m,n] (+)= x[m,k]·w[n,k]ᵀ (+bias) for few rows of x (decode). Memory-bound: every weight row is read
/// from memory once, in groups of four that stay in L1 while each pair of x rows is dotted against them.
/// Packing would only add a second pass over w. Written with <see cref="Vector{T}"/>, which is AVX2 code on
/// x86-64 and NEON on arm64, so this path needs no separate fallback.
/// </summary>
internal static unsafe class SkinnyTransB
{
    /// <summary>Largest m routed here; beyond it the packed micro-kernel reuses w from cache better.</summary>
    public const int MaxRows = 8;

    /// <summary>Weight rows per parallel task (a multiple of 4): 64 rows x 1024 fp32 = 256 KiB of streaming.</summary>
    private const int RowsPerTask = 64;

    private const long ParallelThreshold = 1L << 20;

    /// <param name="workers">1 runs on the caller only; anything else lets the compute pool share the tasks (≤ 0: every core).
    /// The split into tasks is fixed, and each output is computed whole by one task either way.</param>
    public static void Run<T>(float* x, int m, int k, T* w, int n, float* y, float* bias, bool accumulate, int workers)
        where T : unmanaged
    {
        var job = new Job<T>(x, m, k, w, n, y, bias, accumulate);
        int tasks = (n + RowsPerTask - 1) / RowsPerTask;
        if (tasks == 1 || workers == 1 || (long)m * n * k < ParallelThreshold)
        {
            for (int t = 0; t < tasks; t++) job.RunTask(t);
            return;
        }
        ComputePool.Shared.For(tasks, workers <= 0 ? Environment.ProcessorCount : workers, job.RunTask);
    }

    private sealed class Job<T>(float* x, int m, int k, T* w, int n, float* y, float* bias, bool accumulate) where T : unmanaged
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void RunTask(int task)
        {
            int j0 = task * RowsPerTask, j1 = Math.Min(n, j0 + RowsPerTask);
            int j = j0;
            for (; j + 4 <= j1; j += 4)
            {
                int i = 0;
                for (; i + 2 <= m; i += 2) Dot2x4(i, j);
                if (i < m) Dot1x4(i, j);
            }
            for (; j < j1; j++)
                for (int i = 0; i < m; i++) Write(i, j, Dot1x1(x + (nint)i * k, w + (nint)j * k));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Write(int i, int j, float dot)
        {
            if (bias != null) dot += bias[j];
            float* dst = y + (nint)i * n + j;
            *dst = accumulate ? *dst + dot : dot;
        }

        private void Dot2x4(int i, int j)
        {
            float* x0 = x + (nint)i * k, x1 = x0 + k;
            T* w0 = w + (nint)j * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            Vector<float> a00 = default, a01 = default, a02 = default, a03 = default;
            Vector<float> a10 = default, a11 = default, a12 = default, a13 = default;
            int step = 2 * Vector<float>.Count, p = 0;
            for (; p + step <= k; p += step)
            {
                Vector<float> x0l = Vector.Load(x0 + p), x0h = Vector.Load(x0 + p + Vector<float>.Count);
                Vector<float> x1l = Vector.Load(x1 + p), x1h = Vector.Load(x1 + p + Vector<float>.Count);
                Elements.LoadPair(w0 + p, out var lo, out var hi);
                a00 = Vector.MultiplyAddEstimate(x0h, hi, Vector.MultiplyAddEstimate(x0l, lo, a00));
                a10 = Vector.MultiplyAddEstimate(x1h, hi, Vector.MultiplyAddEstimate(x1l, lo, a10));
                Elements.LoadPair(w1 + p, out lo, out hi);
                a01 = Vector.MultiplyAddEstimate(x0h, hi, Vector.MultiplyAddEstimate(x0l, lo, a01));
                a11 = Vector.MultiplyAddEstimate(x1h, hi, Vector.MultiplyAddEstimate(x1l, lo, a11));
                Elements.LoadPair(w2 + p, out lo, out hi);
                a02 = Vector.MultiplyAddEstimate(x0h, hi, Vector.MultiplyAddEstimate(x0l, lo, a02));
                a12 = Vector.MultiplyAddEstimate(x1h, hi, Vector.MultiplyAddEstimate(x1l, lo, a12));
                Elements.LoadPair(w3 + p, out lo, out hi);
                a03 = Vector.MultiplyAddEstimate(x0h, hi, Vector.MultiplyAddEstimate(x0l, lo, a03));
                a13 = Vector.MultiplyAddEstimate(x1h, hi, Vector.MultiplyAddEstimate(x1l, lo, a13));
            }
            Write(i, j, Vector.Sum(a00) + Tail(x0, w0, p));
            Write(i, j + 1, Vector.Sum(a01) + Tail(x0, w1, p));
            Write(i, j + 2, Vector.Sum(a02) + Tail(x0, w2, p));
            Write(i, j + 3, Vector.Sum(a03) + Tail(x0, w3, p));
            Write(i + 1, j, Vector.Sum(a10) + Tail(x1, w0, p));
            Write(i + 1, j + 1, Vector.Sum(a11) + Tail(x1, w1, p));
            Write(i + 1, j + 2, Vector.Sum(a12) + Tail(x1, w2, p));
            Write(i + 1, j + 3, Vector.Sum(a13) + Tail(x1, w3, p));
        }

        // Two accumulators per weight row (low and high half) keep eight FMA chains in flight for m = 1.
        private void Dot1x4(int i, int j)
        {
            float* x0 = x + (nint)i * k;
            T* w0 = w + (nint)j * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            Vector<float> l0 = default, l1 = default, l2 = default, l3 = default;
            Vector<float> h0 = default, h1 = default, h2 = default, h3 = default;
            int step = 2 * Vector<float>.Count, p = 0;
            for (; p + step <= k; p += step)
            {
                Vector<float> xl = Vector.Load(x0 + p), xh = Vector.Load(x0 + p + Vector<float>.Count);
                Elements.LoadPair(w0 + p, out var lo, out var hi);
                l0 = Vector.MultiplyAddEstimate(xl, lo, l0); h0 = Vector.MultiplyAddEstimate(xh, hi, h0);
                Elements.LoadPair(w1 + p, out lo, out hi);
                l1 = Vector.MultiplyAddEstimate(xl, lo, l1); h1 = Vector.MultiplyAddEstimate(xh, hi, h1);
                Elements.LoadPair(w2 + p, out lo, out hi);
                l2 = Vector.MultiplyAddEstimate(xl, lo, l2); h2 = Vector.MultiplyAddEstimate(xh, hi, h2);
                Elements.LoadPair(w3 + p, out lo, out hi);
                l3 = Vector.MultiplyAddEstimate(xl, lo, l3); h3 = Vector.MultiplyAddEstimate(xh, hi, h3);
            }
            Write(i, j, Vector.Sum(l0 + h0) + Tail(x0, w0, p));
            Write(i, j + 1, Vector.Sum(l1 + h1) + Tail(x0, w1, p));
            Write(i, j + 2, Vector.Sum(l2 + h2) + Tail(x0, w2, p));
            Write(i, j + 3, Vector.Sum(l3 + h3) + Tail(x0, w3, p));
        }

        private float Dot1x1(float* xRow, T* wRow)
        {
            Vector<float> l = default, h = default;
            int step = 2 * Vector<float>.Count, p = 0;
            for (; p + step <= k; p += step)
            {
                Elements.LoadPair(wRow + p, out var lo, out var hi);
                l = Vector.MultiplyAddEstimate(Vector.Load(xRow + p), lo, l);
                h = Vector.MultiplyAddEstimate(Vector.Load(xRow + p + Vector<float>.Count), hi, h);
            }
            return Vector.Sum(l + h) + Tail(xRow, wRow, p);
        }

        /// <summary>The k % (2·Vector&lt;float&gt;.Count) leftover products, summed in order.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private float Tail(float* xRow, T* wRow, int from)
        {
            float s = 0f;
            for (int p = from; p < k; p++) s += xRow[p] * Elements.Load1(wRow + p);
            return s;
        }
    }
}
