using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using E3.Backends.Cpu.Threading;

namespace E3.Backends.Cpu.Attention;

/// <summary>
/// Causal GQA attention on the CPU for training and for prefill over a KV cache, tiled as flash attention is, so no
/// [T×T] tensor exists: the forward keeps each query block's scores in a per-thread [block × T] scratch and saves only
/// the log-sum-exp per row; the backward recomputes P from it. Layouts: q, o and dO [B·T, heads·d]; k and v [B·T, kvHeads·d]; lse [B·T, heads].
/// K (and V) are first transposed per (sequence, kv head) so that every product is a <see cref="TileProduct"/> with
/// unit-stride vector loads. The backward runs in two passes so that each gradient element has one owner: dK and dV per
/// key block (over every later query of every head in the group), then dQ per query block; no atomics, no per-thread
/// partial sums, the same bits at any thread count.
/// </summary>
internal static unsafe class CausalAttention
{
    /// <summary>Rows of queries per work item; also the key block of the dK/dV pass. A multiple of every vector width.</summary>
    const int Block = 32;

    /// <summary>Below this many score entries one thread is faster than waking the pool.</summary>
    const long ParallelThreshold = 1 << 14;

    static int W => Vector<float>.Count;

    static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>
    /// Batch, T query rows per sequence, heads, kv heads, head dim and the score scale. For prefill into a KV cache,
    /// <see cref="Start"/> is the first query's position (it sees <see cref="Start"/> earlier keys) and
    /// <see cref="KeyStride"/> the cache's rows per sequence; training leaves both at their defaults (0 and T).
    /// </summary>
    public readonly record struct Shape(int Batch, int T, int Heads, int KvHeads, int HeadDim, float Scale)
    {
        public int Start { get; init; }
        public int KeyStride { get => _keyStride == 0 ? T : _keyStride; init => _keyStride = value; }
        readonly int _keyStride;

        public int Group => Heads / KvHeads;
        public int QueryWidth => Heads * HeadDim;
        public int KvWidth => KvHeads * HeadDim;
        /// <summary>Keys of each sequence: the cached ones and this call's.</summary>
        public int Keys => Start + T;
        /// <summary>Row stride of the transposed K and V: the keys rounded up to whole key blocks (a multiple of the vector width), the padding zero.</summary>
        public int Padded => RoundUp(Keys, Block);
        public int Blocks => (T + Block - 1) / Block;
        public long Work => (long)Batch * Heads * T * Keys;
    }

    /// <summary>o = softmax(q·kᵀ·scale, causal)·v; lse (may be null) receives each row's log-sum-exp.</summary>
    public static void Forward(float* q, float* k, float* v, float* o, float* lse, Shape s, int threads)
    {
        var kt = Transposed(k, s, threads);
        try
        {
            int tp = s.Padded;
            For(s, s.Batch * s.Heads * s.Blocks, threads, Block * tp, 0, (item, scores, _) =>
            {
                int qb = item % s.Blocks, hd = item / s.Blocks % s.Heads, b = item / s.Blocks / s.Heads, kvh = hd / s.Group;
                int t0 = qb * Block, rows = Math.Min(Block, s.T - t0), keys = s.Start + t0 + rows, keysPad = RoundUp(keys, W);
                float* qBlock = q + ((long)b * s.T + t0) * s.QueryWidth + hd * s.HeadDim;
                float* ktHead = kt + ((long)b * s.KvHeads + kvh) * s.HeadDim * tp;
                TileProduct.Run(qBlock, s.QueryWidth, 1, rows, s.HeadDim, ktHead, tp, keysPad, scores, keysPad, false);
                for (int i = 0; i < rows; i++)
                {
                    float* row = scores + i * keysPad;
                    int valid = s.Start + t0 + i + 1;
                    float max = s.Scale * TensorPrimitives.Max(new ReadOnlySpan<float>(row, valid));
                    float sum = ExpRow(row, valid, keysPad, s.Scale, max);
                    TensorPrimitives.Multiply(new ReadOnlySpan<float>(row, keysPad), 1f / sum, new Span<float>(row, keysPad));
                    if (lse != null) lse[((long)b * s.T + t0 + i) * s.Heads + hd] = max + MathF.Log(sum);
                }
                float* vHead = v + (long)b * s.KeyStride * s.KvWidth + kvh * s.HeadDim;
                TileProduct.Run(scores, keysPad, 1, rows, keys, vHead, s.KvWidth, s.HeadDim,
                    o + ((long)b * s.T + t0) * s.QueryWidth + hd * s.HeadDim, s.QueryWidth, false);
            });
        }
        finally { NativeMemory.AlignedFree(kt); }
    }

    /// <summary>dq, dk, dv of Σ dO ⊙ o from the forward's saved log-sum-exp (training shapes: no cache, Start 0).</summary>
    public static void Backward(float* q, float* k, float* v, float* o, float* dO, float* lse, Shape s, float* dq, float* dk, float* dv, int threads)
    {
        if (s.Start != 0 || s.KeyStride != s.T) throw new ArgumentException($"the attention backward takes training shapes (no KV cache), got {s}");
        float* kt = Transposed(k, s, threads), vt = null, delta = null;
        try
        {
            vt = Transposed(v, s, threads);
            delta = RowDots(dO, o, s, threads);
            KeyBlockPass(q, dO, lse, delta, kt, vt, s, dk, dv, threads);
            QueryBlockPass(q, k, dO, lse, delta, kt, vt, s, dq, threads);
        }
        finally
        {
            NativeMemory.AlignedFree(kt);
            NativeMemory.AlignedFree(vt);
            NativeMemory.AlignedFree(delta);
        }
    }

    /// <summary>
    /// dV_j = Σ_t P_tj·dO_t and dK_j = Σ_t dS_tj·q_t over the queries t ≥ j of every head that reads kv head j's group;
    /// one work item per (sequence, kv head, key block), heaviest (earliest) blocks first.
    /// </summary>
    static void KeyBlockPass(float* q, float* dO, float* lse, float* delta, float* kt, float* vt, Shape s, float* dk, float* dv, int threads)
    {
        int tp = s.Padded, bp = Block;
        For(s, s.Batch * s.KvHeads * s.Blocks, threads, Block * bp, Block * bp, (item, p, ds) =>
        {
            int kb = item / (s.Batch * s.KvHeads), kvh = item % s.KvHeads, b = item / s.KvHeads % s.Batch;
            int j0 = kb * Block, nk = Math.Min(Block, s.T - j0);
            long kvOffset = ((long)b * s.T + j0) * s.KvWidth + kvh * s.HeadDim;
            for (int j = 0; j < nk; j++)
            {
                new Span<float>(dk + kvOffset + (long)j * s.KvWidth, s.HeadDim).Clear();
                new Span<float>(dv + kvOffset + (long)j * s.KvWidth, s.HeadDim).Clear();
            }
            float* ktBlock = kt + ((long)b * s.KvHeads + kvh) * s.HeadDim * tp + j0;
            float* vtBlock = vt + ((long)b * s.KvHeads + kvh) * s.HeadDim * tp + j0;
            for (int hd = kvh * s.Group; hd < (kvh + 1) * s.Group; hd++)
            {
                for (int t0 = j0; t0 < s.T; t0 += Block)
                {
                    int rows = Math.Min(Block, s.T - t0);
                    long row0 = (long)b * s.T + t0;
                    float* qBlock = q + row0 * s.QueryWidth + hd * s.HeadDim;
                    float* dOBlock = dO + row0 * s.QueryWidth + hd * s.HeadDim;
                    // Columns past nk (the next block's keys, or zero padding) get P = 0 below.
                    TileProduct.Run(qBlock, s.QueryWidth, 1, rows, s.HeadDim, ktBlock, tp, bp, p, bp, false);
                    TileProduct.Run(dOBlock, s.QueryWidth, 1, rows, s.HeadDim, vtBlock, tp, bp, ds, bp, false);
                    for (int i = 0; i < rows; i++)
                    {
                        long row = (row0 + i) * s.Heads + hd;
                        int valid = Math.Min(nk, t0 + i - j0 + 1);
                        ExpRow(p + i * bp, valid, bp, s.Scale, lse[row]);
                        SoftmaxGrad(p + i * bp, ds + i * bp, bp, delta[row], s.Scale);
                    }
                    TileProduct.Run(p, 1, bp, nk, rows, dOBlock, s.QueryWidth, s.HeadDim, dv + kvOffset, s.KvWidth, true);
                    TileProduct.Run(ds, 1, bp, nk, rows, qBlock, s.QueryWidth, s.HeadDim, dk + kvOffset, s.KvWidth, true);
                }
            }
        });
    }

    /// <summary>dq_t = Σ_j dS_tj·k_j, recomputing P and dP per query block: one work item per (sequence, head, query block).</summary>
    static void QueryBlockPass(float* q, float* k, float* dO, float* lse, float* delta, float* kt, float* vt, Shape s, float* dq, int threads)
    {
        int tp = s.Padded;
        For(s, s.Batch * s.Heads * s.Blocks, threads, Block * tp, Block * tp, (item, p, ds) =>
        {
            int qb = item % s.Blocks, hd = item / s.Blocks % s.Heads, b = item / s.Blocks / s.Heads, kvh = hd / s.Group;
            int t0 = qb * Block, rows = Math.Min(Block, s.T - t0), keys = t0 + rows, keysPad = RoundUp(keys, W);
            long row0 = (long)b * s.T + t0;
            float* qBlock = q + row0 * s.QueryWidth + hd * s.HeadDim;
            float* dOBlock = dO + row0 * s.QueryWidth + hd * s.HeadDim;
            long head = ((long)b * s.KvHeads + kvh) * s.HeadDim * tp;
            TileProduct.Run(qBlock, s.QueryWidth, 1, rows, s.HeadDim, kt + head, tp, keysPad, p, keysPad, false);
            TileProduct.Run(dOBlock, s.QueryWidth, 1, rows, s.HeadDim, vt + head, tp, keysPad, ds, keysPad, false);
            for (int i = 0; i < rows; i++)
            {
                long row = (row0 + i) * s.Heads + hd;
                ExpRow(p + i * keysPad, t0 + i + 1, keysPad, s.Scale, lse[row]);
                SoftmaxGrad(p + i * keysPad, ds + i * keysPad, keysPad, delta[row], s.Scale);
            }
            float* kHead = k + (long)b * s.T * s.KvWidth + kvh * s.HeadDim;
            TileProduct.Run(ds, keysPad, 1, rows, keys, kHead, s.KvWidth, s.HeadDim, dq + row0 * s.QueryWidth + hd * s.HeadDim, s.QueryWidth, false);
        });
    }

    /// <summary>Runs <paramref name="body"/>(item, scratchA, scratchB) over the items, each thread with its own two scratch tiles.</summary>
    static void For(Shape s, int items, int threads, int scratchA, int scratchB, TileBody body)
    {
        ComputePool.Shared.For(items, Usable(s, threads), item =>
            body(item, ThreadScratch.Get(ScratchSlot.AttentionScores, scratchA), ThreadScratch.Get(ScratchSlot.AttentionGradients, scratchB)));
    }

    delegate void TileBody(int item, float* a, float* b);

    /// <summary>Threads worth waking for this shape: one below <see cref="ParallelThreshold"/>.</summary>
    static int Usable(Shape s, int threads) => s.Work < ParallelThreshold ? 1 : threads;

    static float* Alloc(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(floats, 1) * sizeof(float), 64);

    /// <summary>[B·kvHeads][d][Padded]: each kv head's keys (or values) as columns, zero past the last key.</summary>
    static float* Transposed(float* x, Shape s, int threads)
    {
        int tp = s.Padded, d = s.HeadDim, keys = s.Keys;
        float* dst = Alloc((long)s.Batch * s.KvHeads * d * tp);
        ComputePool.Shared.For(s.Batch * s.KvHeads, Usable(s, threads), item =>
        {
            int b = item / s.KvHeads, kvh = item % s.KvHeads;
            float* head = dst + (long)item * d * tp;
            float* src = x + (long)b * s.KeyStride * s.KvWidth + kvh * d;
            for (int j = 0; j < keys; j++, src += s.KvWidth)
                for (int c = 0; c < d; c++) head[(long)c * tp + j] = src[c];
            for (int c = 0; c < d; c++) new Span<float>(head + (long)c * tp + keys, tp - keys).Clear();
        });
        return dst;
    }

    /// <summary>D[row·heads + h] = ⟨dO, O⟩ of that row and head: Σ_j P_j·dP_j without a pass over the keys.</summary>
    static float* RowDots(float* dO, float* o, Shape s, int threads)
    {
        long rows = (long)s.Batch * s.T;
        float* delta = Alloc(rows * s.Heads);
        ComputePool.Shared.ForRanges(rows, Usable(s, threads), (start, end) =>
        {
            for (long r = start; r < end; r++)
                for (int hd = 0; hd < s.Heads; hd++)
                {
                    long at = r * s.QueryWidth + hd * s.HeadDim;
                    delta[r * s.Heads + hd] = TensorPrimitives.Dot(new ReadOnlySpan<float>(dO + at, s.HeadDim), new ReadOnlySpan<float>(o + at, s.HeadDim));
                }
        });
        return delta;
    }

    /// <summary>
    /// s_j ← exp(scale·s_j − shift) for j &lt; valid and 0 for valid ≤ j &lt; padded (a multiple of the vector width);
    /// returns Σ s_j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float ExpRow(float* s, int valid, int padded, float scale, float shift)
    {
        int w = W, j = 0;
        var vScale = new Vector<float>(scale);
        var vShift = new Vector<float>(-shift);
        var sum = Vector<float>.Zero;
        for (; j + w <= valid; j += w)
        {
            var e = Vector.Exp(Vector.MultiplyAddEstimate(Vector.Load(s + j), vScale, vShift));
            e.Store(s + j);
            sum += e;
        }
        var limit = new Vector<int>(valid);
        for (; j < padded; j += w)
        {
            // Lanes past `valid` hold masked or padding scores; they may overflow exp, so they are selected away.
            var keep = Vector.LessThan(Vector<int>.Indices + new Vector<int>(j), limit).As<int, float>();
            var e = Vector.ConditionalSelect(keep, Vector.Exp(Vector.MultiplyAddEstimate(Vector.Load(s + j), vScale, vShift)), Vector<float>.Zero);
            e.Store(s + j);
            sum += e;
        }
        return Vector.Sum(sum);
    }

    /// <summary>dS = P ⊙ (dP − D)·scale, written over dP.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void SoftmaxGrad(float* p, float* dp, int padded, float delta, float scale)
    {
        var vDelta = new Vector<float>(delta);
        var vScale = new Vector<float>(scale);
        for (int j = 0; j < padded; j += W)
            (Vector.Load(p + j) * (Vector.Load(dp + j) - vDelta) * vScale).Store(dp + j);
    }
}
