using System.Runtime.CompilerServices;

namespace E3.Backends.Cpu.Gemm;

/// <summary>
/// C[M,N] (+)= A[M,K]·B[K,N] (+bias[N]), C row-major with row stride N, in the Goto/BLIS shape:
/// K is cut into L2-sized blocks, A and B are packed per (MC x NC) output task, and the micro-kernel walks
/// NR-wide B panels (kept in L1) against MR-row A panels (kept in L2).
/// Threads own whole output tasks and every task sums K in the same block order, so the result does not
/// depend on thread count or scheduling.
/// </summary>
internal static unsafe class BlockedGemm
{
    /// <summary>K block: a 16-column B panel of KC floats (16 KiB) stays in the 32 KiB L1.</summary>
    public const int KC = 256;

    /// <summary>M block (a multiple of MR = 6): the 96 KiB A block and a 256 KiB B block fit a 512 KiB L2.</summary>
    public const int MC = 96;

    /// <summary>N block (a multiple of every NR we use: 8, 16, 32).</summary>
    public const int NC = 256;

    /// <summary>Below this many multiply-adds a single thread finishes before the others would wake.</summary>
    private const long ParallelThreshold = 1L << 20;

    public static void Run<TKernel, TA, TB>(int m, int n, int k, TA a, TB b, float* c, float* bias, bool accumulate)
        where TKernel : struct, IMicroKernel where TA : struct, IPackA where TB : struct, IPackB
    {
        var job = new Job<TKernel, TA, TB>(m, n, k, a, b, c, bias, accumulate);
        int tasks = job.TaskCount;
        if (tasks == 1 || (long)m * n * k < ParallelThreshold)
        {
            for (int t = 0; t < tasks; t++) job.RunTask(t);
            return;
        }
        Parallel.For(0, tasks, job.RunTask);
    }

    private sealed class Job<TKernel, TA, TB>(int m, int n, int k, TA a, TB b, float* c, float* bias, bool accumulate)
        where TKernel : struct, IMicroKernel where TA : struct, IPackA where TB : struct, IPackB
    {
        private readonly int _mBlocks = (m + MC - 1) / MC;

        public int TaskCount => _mBlocks * ((n + NC - 1) / NC);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void RunTask(int task)
        {
            int mr = TKernel.MR, nr = TKernel.NR;
            int i0 = task % _mBlocks * MC, j0 = task / _mBlocks * NC;
            int mc = Math.Min(MC, m - i0), nc = Math.Min(NC, n - j0);
            int mcPadded = (mc + mr - 1) / mr * mr, ncPadded = (nc + nr - 1) / nr * nr;
            float* packedA = PackScratch.Get((nint)(mcPadded + ncPadded) * KC);
            float* packedB = packedA + (nint)mcPadded * KC;

            for (int p0 = 0; p0 < k; p0 += KC)
            {
                int kc = Math.Min(KC, k - p0);
                a.Pack(packedA, i0, mc, p0, kc, mr);
                b.Pack(packedB, p0, kc, j0, nc, nr);
                // The first K block lays down bias (and keeps C when accumulating); later blocks add to C.
                bool addToC = accumulate || p0 > 0;
                float* blockBias = p0 == 0 ? bias : null;
                for (int jr = 0; jr < nc; jr += nr)
                {
                    float* panelB = packedB + (nint)jr * kc;
                    float* tileBias = blockBias == null ? null : blockBias + j0 + jr;
                    int cols = Math.Min(nr, nc - jr);
                    for (int ir = 0; ir < mc; ir += mr)
                    {
                        float* tile = c + (nint)(i0 + ir) * n + j0 + jr;
                        TKernel.Run(kc, packedA + (nint)ir * kc, panelB, tile, n, Math.Min(mr, mc - ir), cols, tileBias, addToC);
                    }
                }
            }
        }
    }
}
