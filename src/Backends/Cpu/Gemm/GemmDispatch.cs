namespace E3.Backends.Cpu.Gemm;

/// <summary>
/// Routes each GEMM variant to the skinny path or the blocked path and picks the micro-kernel.
/// <c>portable</c> forces the <see cref="System.Numerics.Vector{T}"/> kernel and <c>workers</c> plans the
/// blocked path's partition for that many threads (≤ 0: one per processor); tests vary both on one machine.
/// </summary>
internal static unsafe class GemmDispatch
{
    public static bool PreferPortable => !Avx2Kernel6x16.IsSupported;

    public static void TransB<T>(float* x, int m, int k, T* w, int n, float* y, float* bias, bool accumulate, bool portable, int workers = 0)
        where T : unmanaged
    {
        if (Degenerate(m, n, k, y, bias, accumulate)) return;
        if (m <= SkinnyTransB.MaxRows)
        {
            SkinnyTransB.Run(x, m, k, w, n, y, bias, accumulate, workers);
            return;
        }
        Blocked(m, n, k, new RowMajorA(x, k), new RowsAsColumnsB<T>(w, k), y, bias, accumulate, portable, workers);
    }

    public static void NoTrans<T>(float* x, int m, int k, T* w, int n, float* y, bool accumulate, bool portable, int workers = 0)
        where T : unmanaged
    {
        if (Degenerate(m, n, k, y, null, accumulate)) return;
        Blocked(m, n, k, new RowMajorA(x, k), new RowMajorB<T>(w, n), y, null, accumulate, portable, workers);
    }

    /// <summary>dw[n,k] (+)= dy[m,n]ᵀ·x[m,k]: a GEMM of shape (n, k, inner m) with dy read transposed.</summary>
    public static void TransA(float* x, int m, int k, float* dy, int n, float* dw, bool accumulate, bool portable, int workers = 0)
    {
        if (Degenerate(n, k, m, dw, null, accumulate)) return;
        Blocked(n, k, m, new TransposedA(dy, n), new RowMajorB<float>(x, k), dw, null, accumulate, portable, workers);
    }

    private static void Blocked<TA, TB>(int m, int n, int k, TA a, TB b, float* c, float* bias, bool accumulate, bool portable, int workers)
        where TA : struct, IPackA where TB : struct, IPackB
    {
        if (portable) BlockedGemm.Run<PortableKernel, TA, TB>(m, n, k, a, b, c, bias, accumulate, workers);
        else BlockedGemm.Run<Avx2Kernel6x16, TA, TB>(m, n, k, a, b, c, bias, accumulate, workers);
    }

    /// <summary>
    /// Handles empty outputs and an empty inner dimension (the product is then zero, leaving C (+) bias).
    /// Returns true when nothing is left to compute.
    /// </summary>
    private static bool Degenerate(int rows, int cols, int inner, float* c, float* bias, bool accumulate)
    {
        if (rows == 0 || cols == 0) return true;
        if (inner != 0) return false;
        for (long i = 0; i < rows; i++)
        {
            float* row = c + i * cols;
            for (int j = 0; j < cols; j++)
                row[j] = (accumulate ? row[j] : 0f) + (bias != null ? bias[j] : 0f);
        }
        return true;
    }
}
