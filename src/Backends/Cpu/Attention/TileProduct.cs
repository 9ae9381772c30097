using System.Numerics;
using System.Runtime.CompilerServices;

namespace E3.Backends.Cpu.Attention;

/// <summary>
/// C[rows, n] (+)= M[rows, inner] · Y[inner, n] for the small tiles of the attention kernels. M is read through a row and
/// a column stride, so Pᵀ and dSᵀ need no copy; Y and C are row-major with their own strides. Six (or four) rows of C by
/// two vectors of columns stay in registers while the inner loop broadcasts M and streams rows of Y. Every element is
/// one chain of multiply-adds in inner order, and which path computes it depends only on the shapes, so results do too.
/// </summary>
internal static unsafe class TileProduct
{
    static int W => Vector<float>.Count;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* m, nint mRow, nint mCol, int rows, int inner, float* y, nint yRow, int n, float* c, nint cRow, bool accumulate)
    {
        // Six-row tiles where they leave a multiple of four (32 rows: 6+6+6+6+4+4), so that at most three rows take the
        // single-row path, whose few accumulators leave the FMA units waiting.
        int sixes = rows / 6, rest = rows % 6;
        while (sixes > 0 && rest % 4 != 0 && (rest + 6) % 4 == 0) { sixes--; rest += 6; }
        int r = 0;
        for (; r < 6 * sixes; r += 6) SixRows(m + r * mRow, mRow, mCol, inner, y, yRow, n, c + r * cRow, cRow, accumulate);
        for (; r + 4 <= rows; r += 4) FourRows(m + r * mRow, mRow, mCol, inner, y, yRow, n, c + r * cRow, cRow, accumulate);
        for (; r < rows; r++) OneRow(m + r * mRow, mCol, inner, y, yRow, n, c + r * cRow, accumulate);
    }

    /// <summary>Six rows by two vectors: twelve accumulators, two loads of Y and six broadcasts per step, as the GEMM micro-kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void SixRows(float* m, nint mRow, nint mCol, int inner, float* y, nint yRow, int n, float* c, nint cRow, bool accumulate)
    {
        int w = W, j = 0;
        for (; j + 2 * w <= n; j += 2 * w)
        {
            Vector<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default;
            Vector<float> a30 = default, a31 = default, a40 = default, a41 = default, a50 = default, a51 = default;
            if (accumulate)
            {
                a00 = Vector.Load(c + j); a01 = Vector.Load(c + j + w);
                a10 = Vector.Load(c + cRow + j); a11 = Vector.Load(c + cRow + j + w);
                a20 = Vector.Load(c + 2 * cRow + j); a21 = Vector.Load(c + 2 * cRow + j + w);
                a30 = Vector.Load(c + 3 * cRow + j); a31 = Vector.Load(c + 3 * cRow + j + w);
                a40 = Vector.Load(c + 4 * cRow + j); a41 = Vector.Load(c + 4 * cRow + j + w);
                a50 = Vector.Load(c + 5 * cRow + j); a51 = Vector.Load(c + 5 * cRow + j + w);
            }
            float* yp = y + j;
            float* mp = m;
            for (int i = 0; i < inner; i++, yp += yRow, mp += mCol)
            {
                var y0 = Vector.Load(yp);
                var y1 = Vector.Load(yp + w);
                var b = new Vector<float>(mp[0]);
                a00 = Vector.MultiplyAddEstimate(b, y0, a00); a01 = Vector.MultiplyAddEstimate(b, y1, a01);
                b = new Vector<float>(mp[mRow]);
                a10 = Vector.MultiplyAddEstimate(b, y0, a10); a11 = Vector.MultiplyAddEstimate(b, y1, a11);
                b = new Vector<float>(mp[2 * mRow]);
                a20 = Vector.MultiplyAddEstimate(b, y0, a20); a21 = Vector.MultiplyAddEstimate(b, y1, a21);
                b = new Vector<float>(mp[3 * mRow]);
                a30 = Vector.MultiplyAddEstimate(b, y0, a30); a31 = Vector.MultiplyAddEstimate(b, y1, a31);
                b = new Vector<float>(mp[4 * mRow]);
                a40 = Vector.MultiplyAddEstimate(b, y0, a40); a41 = Vector.MultiplyAddEstimate(b, y1, a41);
                b = new Vector<float>(mp[5 * mRow]);
                a50 = Vector.MultiplyAddEstimate(b, y0, a50); a51 = Vector.MultiplyAddEstimate(b, y1, a51);
            }
            a00.Store(c + j); a01.Store(c + j + w);
            a10.Store(c + cRow + j); a11.Store(c + cRow + j + w);
            a20.Store(c + 2 * cRow + j); a21.Store(c + 2 * cRow + j + w);
            a30.Store(c + 3 * cRow + j); a31.Store(c + 3 * cRow + j + w);
            a40.Store(c + 4 * cRow + j); a41.Store(c + 4 * cRow + j + w);
            a50.Store(c + 5 * cRow + j); a51.Store(c + 5 * cRow + j + w);
        }
        if (j < n)
            for (int r = 0; r < 6; r++) OneRow(m + r * mRow, mCol, inner, y + j, yRow, n - j, c + r * cRow + j, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void FourRows(float* m, nint mRow, nint mCol, int inner, float* y, nint yRow, int n, float* c, nint cRow, bool accumulate)
    {
        int w = W, j = 0;
        float* m0 = m, m1 = m + mRow, m2 = m + 2 * mRow, m3 = m + 3 * mRow;
        float* c0 = c, c1 = c + cRow, c2 = c + 2 * cRow, c3 = c + 3 * cRow;
        for (; j + 2 * w <= n; j += 2 * w)
        {
            Vector<float> a00 = default, a01 = default, a10 = default, a11 = default;
            Vector<float> a20 = default, a21 = default, a30 = default, a31 = default;
            if (accumulate)
            {
                a00 = Vector.Load(c0 + j); a01 = Vector.Load(c0 + j + w); a10 = Vector.Load(c1 + j); a11 = Vector.Load(c1 + j + w);
                a20 = Vector.Load(c2 + j); a21 = Vector.Load(c2 + j + w); a30 = Vector.Load(c3 + j); a31 = Vector.Load(c3 + j + w);
            }
            float* yp = y + j;
            for (int i = 0; i < inner; i++, yp += yRow)
            {
                var y0 = Vector.Load(yp);
                var y1 = Vector.Load(yp + w);
                nint at = i * mCol;
                var b = new Vector<float>(m0[at]);
                a00 = Vector.MultiplyAddEstimate(b, y0, a00); a01 = Vector.MultiplyAddEstimate(b, y1, a01);
                b = new Vector<float>(m1[at]);
                a10 = Vector.MultiplyAddEstimate(b, y0, a10); a11 = Vector.MultiplyAddEstimate(b, y1, a11);
                b = new Vector<float>(m2[at]);
                a20 = Vector.MultiplyAddEstimate(b, y0, a20); a21 = Vector.MultiplyAddEstimate(b, y1, a21);
                b = new Vector<float>(m3[at]);
                a30 = Vector.MultiplyAddEstimate(b, y0, a30); a31 = Vector.MultiplyAddEstimate(b, y1, a31);
            }
            a00.Store(c0 + j); a01.Store(c0 + j + w); a10.Store(c1 + j); a11.Store(c1 + j + w);
            a20.Store(c2 + j); a21.Store(c2 + j + w); a30.Store(c3 + j); a31.Store(c3 + j + w);
        }
        if (j < n)
        {
            OneRow(m0, mCol, inner, y + j, yRow, n - j, c0 + j, accumulate);
            OneRow(m1, mCol, inner, y + j, yRow, n - j, c1 + j, accumulate);
            OneRow(m2, mCol, inner, y + j, yRow, n - j, c2 + j, accumulate);
            OneRow(m3, mCol, inner, y + j, yRow, n - j, c3 + j, accumulate);
        }
    }

    /// <summary>One row, four vectors at a time so that four FMA chains overlap.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void OneRow(float* m, nint mCol, int inner, float* y, nint yRow, int n, float* c, bool accumulate)
    {
        int w = W, j = 0;
        for (; j + 4 * w <= n; j += 4 * w)
        {
            Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
            if (accumulate) { a0 = Vector.Load(c + j); a1 = Vector.Load(c + j + w); a2 = Vector.Load(c + j + 2 * w); a3 = Vector.Load(c + j + 3 * w); }
            float* yp = y + j;
            for (int i = 0; i < inner; i++, yp += yRow)
            {
                var b = new Vector<float>(m[i * mCol]);
                a0 = Vector.MultiplyAddEstimate(b, Vector.Load(yp), a0);
                a1 = Vector.MultiplyAddEstimate(b, Vector.Load(yp + w), a1);
                a2 = Vector.MultiplyAddEstimate(b, Vector.Load(yp + 2 * w), a2);
                a3 = Vector.MultiplyAddEstimate(b, Vector.Load(yp + 3 * w), a3);
            }
            a0.Store(c + j); a1.Store(c + j + w); a2.Store(c + j + 2 * w); a3.Store(c + j + 3 * w);
        }
        for (; j + w <= n; j += w)
        {
            var acc = accumulate ? Vector.Load(c + j) : default;
            float* yp = y + j;
            for (int i = 0; i < inner; i++, yp += yRow) acc = Vector.MultiplyAddEstimate(new Vector<float>(m[i * mCol]), Vector.Load(yp), acc);
            acc.Store(c + j);
        }
        for (; j < n; j++)
        {
            float acc = accumulate ? c[j] : 0f;
            for (int i = 0; i < inner; i++) acc = float.MultiplyAddEstimate(m[i * mCol], y[i * yRow + j], acc);
            c[j] = acc;
        }
    }
}
