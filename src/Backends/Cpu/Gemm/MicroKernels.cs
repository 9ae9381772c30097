using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace E3.Backends.Cpu.Gemm;

/// <summary>
/// A register-blocked tile update: C[rows, cols] = acc (+ bias[cols]) (+ C), where
/// acc = A panel [MR x kc] · B panel [kc x NR], A packed as a[p*MR + r] and B as b[p*NR + j].
/// Edge tiles (rows &lt; MR or cols &lt; NR) arrive zero-padded, so the kernel always computes the full tile.
/// </summary>
internal unsafe interface IMicroKernel
{
    static abstract int MR { get; }
    static abstract int NR { get; }
    static abstract void Run(int kc, float* a, float* b, float* c, nint ldc, int rows, int cols, float* bias, bool addToC);
}

/// <summary>Shared tile write-back so that full and edge tiles round identically (acc, then bias, then C).</summary>
internal static unsafe class TileStore
{
    /// <summary>Writes a zero-padded tile held in <paramref name="tile"/> (row stride <paramref name="nr"/>) into C.</summary>
    public static void Partial(float* tile, int nr, float* c, nint ldc, int rows, int cols, float* bias, bool addToC)
    {
        for (int r = 0; r < rows; r++)
        {
            float* src = tile + r * nr;
            float* dst = c + r * ldc;
            for (int j = 0; j < cols; j++)
            {
                float v = src[j];
                if (bias != null) v += bias[j];
                if (addToC) v += dst[j];
                dst[j] = v;
            }
        }
    }
}

/// <summary>6x16 fp32 tile with AVX2+FMA: 12 accumulators, 2 B vectors and one broadcast fill the 16 ymm registers.</summary>
internal unsafe struct Avx2Kernel6x16 : IMicroKernel
{
    public static int MR => 6;
    public static int NR => 16;
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(int kc, float* a, float* b, float* c, nint ldc, int rows, int cols, float* bias, bool addToC)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector256<float> b0 = Avx.LoadAlignedVector256(b);
            Vector256<float> b1 = Avx.LoadAlignedVector256(b + 8);
            Vector256<float> ai = Avx.BroadcastScalarToVector256(a);
            c00 = Fma.MultiplyAdd(ai, b0, c00); c01 = Fma.MultiplyAdd(ai, b1, c01);
            ai = Avx.BroadcastScalarToVector256(a + 1);
            c10 = Fma.MultiplyAdd(ai, b0, c10); c11 = Fma.MultiplyAdd(ai, b1, c11);
            ai = Avx.BroadcastScalarToVector256(a + 2);
            c20 = Fma.MultiplyAdd(ai, b0, c20); c21 = Fma.MultiplyAdd(ai, b1, c21);
            ai = Avx.BroadcastScalarToVector256(a + 3);
            c30 = Fma.MultiplyAdd(ai, b0, c30); c31 = Fma.MultiplyAdd(ai, b1, c31);
            ai = Avx.BroadcastScalarToVector256(a + 4);
            c40 = Fma.MultiplyAdd(ai, b0, c40); c41 = Fma.MultiplyAdd(ai, b1, c41);
            ai = Avx.BroadcastScalarToVector256(a + 5);
            c50 = Fma.MultiplyAdd(ai, b0, c50); c51 = Fma.MultiplyAdd(ai, b1, c51);
            a += 6;
            b += 16;
        }

        if (rows == 6 && cols == 16)
        {
            Vector256<float> bias0 = default, bias1 = default;
            if (bias != null) { bias0 = Avx.LoadVector256(bias); bias1 = Avx.LoadVector256(bias + 8); }
            StoreRow(c, c00, c01, bias0, bias1, bias != null, addToC);
            StoreRow(c + ldc, c10, c11, bias0, bias1, bias != null, addToC);
            StoreRow(c + 2 * ldc, c20, c21, bias0, bias1, bias != null, addToC);
            StoreRow(c + 3 * ldc, c30, c31, bias0, bias1, bias != null, addToC);
            StoreRow(c + 4 * ldc, c40, c41, bias0, bias1, bias != null, addToC);
            StoreRow(c + 5 * ldc, c50, c51, bias0, bias1, bias != null, addToC);
            return;
        }

        float* tile = stackalloc float[6 * 16];
        Avx.Store(tile, c00); Avx.Store(tile + 8, c01);
        Avx.Store(tile + 16, c10); Avx.Store(tile + 24, c11);
        Avx.Store(tile + 32, c20); Avx.Store(tile + 40, c21);
        Avx.Store(tile + 48, c30); Avx.Store(tile + 56, c31);
        Avx.Store(tile + 64, c40); Avx.Store(tile + 72, c41);
        Avx.Store(tile + 80, c50); Avx.Store(tile + 88, c51);
        TileStore.Partial(tile, 16, c, ldc, rows, cols, bias, addToC);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* dst, Vector256<float> lo, Vector256<float> hi,
        Vector256<float> bias0, Vector256<float> bias1, bool hasBias, bool addToC)
    {
        if (hasBias) { lo = Avx.Add(lo, bias0); hi = Avx.Add(hi, bias1); }
        if (addToC) { lo = Avx.Add(lo, Avx.LoadVector256(dst)); hi = Avx.Add(hi, Avx.LoadVector256(dst + 8)); }
        Avx.Store(dst, lo);
        Avx.Store(dst + 8, hi);
    }
}

/// <summary>
/// The same 6-row tile over two <see cref="Vector{T}"/> columns, for machines without AVX2/FMA
/// (NEON gives 6x8, AVX-512-sized Vector&lt;T&gt; gives 6x32).
/// </summary>
internal unsafe struct PortableKernel : IMicroKernel
{
    public static int MR => 6;
    public static int NR => 2 * Vector<float>.Count;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(int kc, float* a, float* b, float* c, nint ldc, int rows, int cols, float* bias, bool addToC)
    {
        int w = Vector<float>.Count;
        int nr = 2 * w;
        Vector<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector<float> b0 = Vector.Load(b);
            Vector<float> b1 = Vector.Load(b + w);
            Vector<float> ai = new(a[0]);
            c00 = Vector.MultiplyAddEstimate(ai, b0, c00); c01 = Vector.MultiplyAddEstimate(ai, b1, c01);
            ai = new(a[1]);
            c10 = Vector.MultiplyAddEstimate(ai, b0, c10); c11 = Vector.MultiplyAddEstimate(ai, b1, c11);
            ai = new(a[2]);
            c20 = Vector.MultiplyAddEstimate(ai, b0, c20); c21 = Vector.MultiplyAddEstimate(ai, b1, c21);
            ai = new(a[3]);
            c30 = Vector.MultiplyAddEstimate(ai, b0, c30); c31 = Vector.MultiplyAddEstimate(ai, b1, c31);
            ai = new(a[4]);
            c40 = Vector.MultiplyAddEstimate(ai, b0, c40); c41 = Vector.MultiplyAddEstimate(ai, b1, c41);
            ai = new(a[5]);
            c50 = Vector.MultiplyAddEstimate(ai, b0, c50); c51 = Vector.MultiplyAddEstimate(ai, b1, c51);
            a += 6;
            b += nr;
        }

        // One write-back path for every tile: this kernel is the fallback, so simplicity beats the extra copy.
        float* tile = stackalloc float[6 * nr];
        c00.Store(tile); c01.Store(tile + w);
        c10.Store(tile + nr); c11.Store(tile + nr + w);
        c20.Store(tile + 2 * nr); c21.Store(tile + 2 * nr + w);
        c30.Store(tile + 3 * nr); c31.Store(tile + 3 * nr + w);
        c40.Store(tile + 4 * nr); c41.Store(tile + 4 * nr + w);
        c50.Store(tile + 5 * nr); c51.Store(tile + 5 * nr + w);
        TileStore.Partial(tile, nr, c, ldc, rows, cols, bias, addToC);
    }
}
