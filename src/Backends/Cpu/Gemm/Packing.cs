using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace E3.Backends.Cpu.Gemm;

/// <summary>
/// Copies an [mc x kc] block of the left operand into micro-panels of <c>mr</c> rows:
/// panel q starts at dst + q*mr*kc and holds element (r, p) at [p*mr + r]; rows past the edge are zero.
/// </summary>
internal unsafe interface IPackA
{
    void Pack(float* dst, int i0, int mc, int p0, int kc, int mr);
}

/// <summary>
/// Copies a [kc x nc] block of the right operand into micro-panels of <c>nr</c> columns:
/// panel q starts at dst + q*nr*kc and holds element (p, j) at [p*nr + j]; columns past the edge are zero.
/// </summary>
internal unsafe interface IPackB
{
    void Pack(float* dst, int p0, int kc, int j0, int nc, int nr);
}

/// <summary>A(i, p) = data[i*ld + p]: an ordinary row-major left operand.</summary>
internal readonly unsafe struct RowMajorA(float* data, nint ld) : IPackA
{
    public void Pack(float* dst, int i0, int mc, int p0, int kc, int mr)
    {
        for (int ir = 0; ir < mc; ir += mr)
        {
            int rows = Math.Min(mr, mc - ir);
            float* panel = dst + (nint)ir * kc;
            float* src = data + (i0 + ir) * ld + p0;
            int p = 0;
            if (Avx2.IsSupported && mr == 6 && rows == 6)
                for (; p + 8 <= kc; p += 8) PackSixRows(panel + p * 6, src + p);
            for (; p < kc; p++)
            {
                int r = 0;
                for (; r < rows; r++) panel[p * mr + r] = src[r * ld + p];
                for (; r < mr; r++) panel[p * mr + r] = 0f;
            }
        }
    }

    /// <summary>Eight columns of six rows: transposed in registers, each column stored as 4 + 2 floats.</summary>
    private void PackSixRows(float* dst, float* src)
    {
        Vector256<float> r0 = Avx.LoadVector256(src), r1 = Avx.LoadVector256(src + ld), r2 = Avx.LoadVector256(src + 2 * ld);
        Vector256<float> r3 = Avx.LoadVector256(src + 3 * ld), r4 = Avx.LoadVector256(src + 4 * ld), r5 = Avx.LoadVector256(src + 5 * ld);
        Vector256<float> r6 = default, r7 = default;
        RegisterTranspose.Eight(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        StoreSix(dst, r0); StoreSix(dst + 6, r1); StoreSix(dst + 12, r2); StoreSix(dst + 18, r3);
        StoreSix(dst + 24, r4); StoreSix(dst + 30, r5); StoreSix(dst + 36, r6); StoreSix(dst + 42, r7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreSix(float* dst, Vector256<float> column)
    {
        Sse.Store(dst, column.GetLower());
        Sse2.StoreScalar((double*)(dst + 4), column.GetUpper().AsDouble());
    }
}

/// <summary>A(i, p) = data[p*ld + i]: the left operand stored transposed (dYᵀ in the weight gradient).</summary>
internal readonly unsafe struct TransposedA(float* data, nint ld) : IPackA
{
    public void Pack(float* dst, int i0, int mc, int p0, int kc, int mr)
    {
        for (int ir = 0; ir < mc; ir += mr)
        {
            int rows = Math.Min(mr, mc - ir);
            float* panel = dst + (nint)ir * kc;
            for (int p = 0; p < kc; p++)
            {
                float* src = data + (p0 + p) * ld + i0 + ir;
                float* d = panel + p * mr;
                int r = 0;
                for (; r < rows; r++) d[r] = src[r];
                for (; r < mr; r++) d[r] = 0f;
            }
        }
    }
}

/// <summary>
/// B(p, j) = w[j*ld + p] with fp32 or bf16 elements: nn.Linear weights [out, in], used as wᵀ.
/// With AVX2, 8x8 blocks are transposed in registers, converting bf16 on the way in.
/// </summary>
internal readonly unsafe struct RowsAsColumnsB<T>(T* data, nint ld) : IPackB where T : unmanaged
{
    public void Pack(float* dst, int p0, int kc, int j0, int nc, int nr)
    {
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* panel = dst + (nint)jr * kc;
            int jj = 0;
            if (Avx2.IsSupported)
                for (; jj + 8 <= cols; jj += 8)
                    PackEightColumns(panel + jj, nr, data + (j0 + jr + jj) * ld + p0, kc);
            for (; jj < cols; jj++)
            {
                T* src = data + (j0 + jr + jj) * ld + p0;
                for (int p = 0; p < kc; p++) panel[p * nr + jj] = Elements.Load1(src + p);
            }
            for (; jj < nr; jj++)
                for (int p = 0; p < kc; p++) panel[p * nr + jj] = 0f;
        }
    }

    /// <summary>Eight source rows (weight rows j..j+7) become eight packed columns.</summary>
    private void PackEightColumns(float* dst, int nr, T* src, int kc)
    {
        int p = 0;
        for (; p + 8 <= kc; p += 8)
        {
            Vector256<float> r0 = Elements.Load8(src + p), r1 = Elements.Load8(src + ld + p);
            Vector256<float> r2 = Elements.Load8(src + 2 * ld + p), r3 = Elements.Load8(src + 3 * ld + p);
            Vector256<float> r4 = Elements.Load8(src + 4 * ld + p), r5 = Elements.Load8(src + 5 * ld + p);
            Vector256<float> r6 = Elements.Load8(src + 6 * ld + p), r7 = Elements.Load8(src + 7 * ld + p);
            RegisterTranspose.Eight(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
            float* d = dst + p * nr;
            Avx.Store(d, r0); Avx.Store(d + nr, r1); Avx.Store(d + 2 * nr, r2); Avx.Store(d + 3 * nr, r3);
            Avx.Store(d + 4 * nr, r4); Avx.Store(d + 5 * nr, r5); Avx.Store(d + 6 * nr, r6); Avx.Store(d + 7 * nr, r7);
        }
        for (; p < kc; p++)
            for (int c = 0; c < 8; c++) dst[p * nr + c] = Elements.Load1(src + c * ld + p);
    }
}

/// <summary>
/// B(p, j) = w[p*ld + j] with fp32 or bf16 elements: an ordinary row-major right operand (W in dX = dY·W).
/// Rows are walked once each, left to right across every panel: reading a weight row panel by panel instead would
/// revisit kc rows a large power-of-two stride apart per panel, which costs a TLB and cache-set miss per 64 bytes.
/// </summary>
internal readonly unsafe struct RowMajorB<T>(T* data, nint ld) : IPackB where T : unmanaged
{
    private const int Lookahead = 4;

    public void Pack(float* dst, int p0, int kc, int j0, int nc, int nr)
    {
        int full = nc / nr * nr;
        for (int p = 0; p < kc; p++)
        {
            T* src = data + (p0 + p) * ld + j0;
            float* d = dst + p * nr;
            int j = 0;
            // Rows lie a (often power-of-two) stride apart, which the hardware prefetcher follows poorly.
            if (Sse.IsSupported && p + Lookahead < kc)
                for (nint line = 0; line < (nint)nc * sizeof(T); line += 64) Sse.Prefetch0((byte*)(src + Lookahead * ld) + line);
            if (Avx2.IsSupported && nr % 8 == 0)
                for (; j < full; j += nr, d += (nint)nr * kc)
                    for (int c = 0; c < nr; c += 8) Avx.Store(d + c, Elements.Load8(src + j + c));
            for (; j < full; j += nr, d += (nint)nr * kc)
                for (int c = 0; c < nr; c++) d[c] = Elements.Load1(src + j + c);
            if (j == nc) continue;
            // The last, partial panel: its columns past nc are zero.
            int cols = nc - j;
            for (int c = 0; c < cols; c++) d[c] = Elements.Load1(src + j + c);
            for (int c = cols; c < nr; c++) d[c] = 0f;
        }
    }
}

/// <summary>8x8 fp32 transposes in AVX registers, shared by the packers.</summary>
internal static class RegisterTranspose
{
    /// <summary>In-register transpose: on return r_q holds column q of the original rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Eight(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2,
        ref Vector256<float> r3, ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6,
        ref Vector256<float> r7)
    {
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1);
        Vector256<float> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5);
        Vector256<float> t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> s0 = Avx.Shuffle(t0, t2, 0x44), s1 = Avx.Shuffle(t0, t2, 0xEE);
        Vector256<float> s2 = Avx.Shuffle(t1, t3, 0x44), s3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> s4 = Avx.Shuffle(t4, t6, 0x44), s5 = Avx.Shuffle(t4, t6, 0xEE);
        Vector256<float> s6 = Avx.Shuffle(t5, t7, 0x44), s7 = Avx.Shuffle(t5, t7, 0xEE);
        r0 = Avx.Permute2x128(s0, s4, 0x20); r1 = Avx.Permute2x128(s1, s5, 0x20);
        r2 = Avx.Permute2x128(s2, s6, 0x20); r3 = Avx.Permute2x128(s3, s7, 0x20);
        r4 = Avx.Permute2x128(s0, s4, 0x31); r5 = Avx.Permute2x128(s1, s5, 0x31);
        r6 = Avx.Permute2x128(s2, s6, 0x31); r7 = Avx.Permute2x128(s3, s7, 0x31);
    }
}
