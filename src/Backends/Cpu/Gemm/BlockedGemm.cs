using System.Runtime.CompilerServices;
using E3.Backends.Cpu.Threading;

namespace E3.Backends.Cpu.Gemm;

/// <summary>
/// C[M,N] (+)= A[M,K]·B[K,N] (+bias[N]), C row-major with row stride N, in the Goto/BLIS shape:
/// K is cut into L2-sized blocks; A is packed once per call into MR-row micro-panels shared by all threads;
/// each task packs its own KC x NC block of B once and sweeps it against MC-row blocks of A, the
/// micro-kernel walking NR-wide B panels (in L1) against MR-row A panels (in L2).
/// Threads own whole output tiles and every tile sums K in the same block order, so the result does not
/// depend on thread count, blocking of M and N, or scheduling.
/// </summary>
internal static unsafe class BlockedGemm
{
    /// <summary>K block: a 16-column B panel of KC floats (16 KiB) stays in a 32 KiB L1.</summary>
    public const int KC = 256;

    /// <summary>M block (a multiple of MR = 6): a 96 KiB A block beside a 256 KiB B block fits a 512 KiB L2.</summary>
    public const int MC = 96;

    /// <summary>Largest N block: its KC x NC packed B (256 KiB) is reused by every A block of the task.</summary>
    private const int MaxNC = 256;

    /// <summary>Smallest N block, so that many-core machines do not shred B into overhead-bound slivers.</summary>
    private const int MinNC = 64;

    /// <summary>At most this many floats (16 MiB) of packed A at once; taller A is done in row chunks.</summary>
    private const long MaxSharedAFloats = 4L << 20;

    /// <summary>Below this many multiply-adds a single thread finishes before the others would wake.</summary>
    private const long ParallelThreshold = 1L << 20;

    /// <param name="workers">Threads to plan the partition for (≤ 0: one per processor; 1: run on the caller only).</param>
    public static void Run<TKernel, TA, TB>(int m, int n, int k, TA a, TB b, float* c, float* bias, bool accumulate, int workers)
        where TKernel : struct, IMicroKernel where TA : struct, IPackA where TB : struct, IPackB
    {
        if (workers <= 0) workers = Environment.ProcessorCount;
        bool parallel = (long)m * n * k >= ParallelThreshold && workers > 1;
        if (!parallel) workers = 1;
        long chunkLimit = Math.Max(MC, MaxSharedAFloats / k / MC * MC);
        int chunkRows = (int)Math.Min(chunkLimit, m);
        for (int row0 = 0; row0 < m; row0 += chunkRows)
        {
            var job = new Job<TKernel, TA, TB>(a, b, c, bias, accumulate, row0, Math.Min(chunkRows, m - row0), n, k, workers);
            Execute(parallel, workers, job.PackTaskCount, job.PackA);
            Execute(parallel, workers, job.MultiplyTaskCount, job.Multiply);
        }
    }

    private static void Execute(bool parallel, int workers, int count, Action<int> body)
    {
        if (parallel && count > 1) ComputePool.Shared.For(count, workers, body);
        else for (int i = 0; i < count; i++) body(i);
    }

    /// <summary>One row chunk of A against all of B: the shared packed A and the task partition.</summary>
    private sealed class Job<TKernel, TA, TB>
        where TKernel : struct, IMicroKernel where TA : struct, IPackA where TB : struct, IPackB
    {
        private readonly TA _a;
        private readonly TB _b;
        private readonly float* _c, _bias, _packedA;
        private readonly bool _accumulate;
        private readonly int _row0, _rows, _rowsPadded, _n, _k, _kBlocks, _mBlocks, _nc, _nBlocks, _blocksPerGroup;

        public Job(TA a, TB b, float* c, float* bias, bool accumulate, int row0, int rows, int n, int k, int workers)
        {
            _a = a;
            _b = b;
            _c = c;
            _bias = bias;
            (_accumulate, _row0, _rows, _n, _k) = (accumulate, row0, rows, n, k);
            int mr = TKernel.MR, nr = TKernel.NR;
            _rowsPadded = (rows + mr - 1) / mr * mr;
            _kBlocks = (k + KC - 1) / KC;
            _mBlocks = (rows + MC - 1) / MC;
            // Aim for about four tasks per worker so a preempted thread does not stall the whole call.
            int wanted = 4 * workers;
            _nc = Math.Clamp(RoundUp((n + wanted - 1) / wanted, nr), Math.Min(MinNC, RoundUp(n, nr)), MaxNC);
            _nBlocks = (n + _nc - 1) / _nc;
            int groups = Math.Clamp((wanted + _nBlocks - 1) / _nBlocks, 1, _mBlocks);
            _blocksPerGroup = (_mBlocks + groups - 1) / groups;
            _packedA = ThreadScratch.Get(ScratchSlot.GemmSharedA, (nint)_rowsPadded * KC * _kBlocks);
        }

        public int PackTaskCount => _mBlocks * _kBlocks;

        public int MultiplyTaskCount => _nBlocks * ((_mBlocks + _blocksPerGroup - 1) / _blocksPerGroup);

        private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

        /// <summary>K block pb of A lives at packedA + pb*rowsPadded*KC; the panel of row r within it at + r*kc.</summary>
        private float* RegionA(int kBlock) => _packedA + (nint)kBlock * _rowsPadded * KC;

        public void PackA(int task)
        {
            int mBlock = task % _mBlocks, kBlock = task / _mBlocks;
            int i0 = mBlock * MC, p0 = kBlock * KC, kc = Math.Min(KC, _k - p0);
            _a.Pack(RegionA(kBlock) + (nint)i0 * kc, _row0 + i0, Math.Min(MC, _rows - i0), p0, kc, TKernel.MR);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Multiply(int task)
        {
            int mr = TKernel.MR, nr = TKernel.NR;
            int j0 = task % _nBlocks * _nc, nc = Math.Min(_nc, _n - j0);
            int firstBlock = task / _nBlocks * _blocksPerGroup, endBlock = Math.Min(_mBlocks, firstBlock + _blocksPerGroup);
            float* packedB = ThreadScratch.Get(ScratchSlot.GemmTaskB, (nint)RoundUp(nc, nr) * KC);

            for (int kBlock = 0; kBlock < _kBlocks; kBlock++)
            {
                int p0 = kBlock * KC, kc = Math.Min(KC, _k - p0);
                _b.Pack(packedB, p0, kc, j0, nc, nr);
                float* regionA = RegionA(kBlock);
                // The first K block lays down bias (and keeps C when accumulating); later blocks add to C.
                bool addToC = _accumulate || kBlock > 0;
                float* blockBias = kBlock == 0 ? _bias : null;
                for (int i0 = firstBlock * MC; i0 < endBlock * MC; i0 += MC)
                {
                    int mc = Math.Min(MC, _rows - i0);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        float* panelB = packedB + (nint)jr * kc;
                        float* tileBias = blockBias == null ? null : blockBias + j0 + jr;
                        int cols = Math.Min(nr, nc - jr);
                        for (int ir = i0; ir < i0 + mc; ir += mr)
                        {
                            float* tile = _c + (nint)(_row0 + ir) * _n + j0 + jr;
                            TKernel.Run(kc, regionA + (nint)ir * kc, panelB, tile, _n, Math.Min(mr, _rows - ir), cols, tileBias, addToC);
                        }
                    }
                }
            }
        }
    }
}
