using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>bf16 as stored on the device (its raw bits); a distinct type so a bf16 buffer cannot be passed where fp32 is expected.</summary>
internal readonly record struct Bf16(ushort Bits);

/// <summary>The launch shapes the kernel files document, computed in one place.</summary>
internal static class LaunchShapes
{
    /// <summary>Threads per block for row-per-block and grid-stride kernels (a multiple of 32, as the block reductions require).</summary>
    public const int BlockThreads = 256;

    /// <summary>Warps per block for warp-per-item kernels (rope.cu's E3_ROPE_WARPS_PER_BLOCK).</summary>
    public const int WarpsPerBlock = 4;

    /// <summary>Cap on grid-stride grids: enough blocks to fill any GPU many times over; larger inputs loop.</summary>
    public const int MaxGridStrideBlocks = 1 << 16;

    /// <summary>One block of <see cref="BlockThreads"/> per row.</summary>
    public static LaunchShape RowPerBlock(int rows) => new(new Dim3(checked((uint)rows)), new Dim3(BlockThreads));

    /// <summary>ceil(n / <see cref="BlockThreads"/>) blocks, capped at <see cref="MaxGridStrideBlocks"/>.</summary>
    public static LaunchShape GridStride(long n) =>
        new(new Dim3((uint)Math.Min((n + BlockThreads - 1) / BlockThreads, MaxGridStrideBlocks)), new Dim3(BlockThreads));

    /// <summary>Elements a thread moves per iteration on the bf16 vector paths (one 16-byte access).</summary>
    public const int VectorElements = 8;

    /// <summary>
    /// A grid-stride launch for the kernels that take <see cref="VectorElements"/> elements a thread per iteration when
    /// their pointers are 16-byte aligned: ceil(n / (8 · 256)) blocks, capped at <see cref="MaxGridStrideBlocks"/>. On
    /// their scalar fallback the same grid strides further, which is still correct.
    /// </summary>
    public static LaunchShape GridStrideVectors(long n) => GridStride((n + VectorElements - 1) / VectorElements);

    /// <summary>One warp per item, <see cref="WarpsPerBlock"/> warps per block.</summary>
    public static LaunchShape WarpPerItem(long items) =>
        new(new Dim3(checked((uint)((items + WarpsPerBlock - 1) / WarpsPerBlock))), new Dim3(32 * WarpsPerBlock));

    /// <summary>Cap on the RoPE forward grid (rope.cu's E3_ROPE_MAX_BLOCKS); its warps loop over the remaining items.</summary>
    public const int MaxRopeBlocks = 2048;

    /// <summary>Warp per item as <see cref="WarpPerItem"/>, but at most <paramref name="maxBlocks"/> blocks, whose warps loop over the rest.</summary>
    public static LaunchShape WarpsOverItems(long items, int maxBlocks) =>
        new(new Dim3((uint)Math.Min((items + WarpsPerBlock - 1) / WarpsPerBlock, maxBlocks)), new Dim3(32 * WarpsPerBlock));

    /// <summary>Threads per attention block (attention.cu's E3_ATTN_THREADS: 4 warps).</summary>
    public const int AttentionThreads = 128;

    /// <summary>Query rows per attention block (E3_ATTN_ROWS): prefill tokens of one head, or decode heads of one group.</summary>
    public const int AttentionRows = 16;

    /// <summary>Keys per shared-memory tile (E3_ATTN_KEYS): one per lane while scoring.</summary>
    public const int AttentionKeys = 32;

    /// <summary>Most key splits of one decode launch; bounds the partials workspace.</summary>
    public const int MaxDecodeSplits = 64;

    /// <summary>
    /// Decode blocks wanted per SM. Decode attention streams the KV cache, and a block has one tile (8 KB of K, then of V
    /// at head dim 128 in bf16) in flight only while it loads, not while it computes; four resident blocks keep about
    /// twice what two did, near the ~20 KB per SM that the copy bandwidth times the memory latency asks for. Four fit on
    /// sm_90 (4 x 42 KB of shared memory with the per-block reserve, of 228 KB; 96 registers a thread). sm_80's 164 KB
    /// holds three, and the fourth wave of splits then costs one more round of the combine, not a wrong answer.
    /// </summary>
    public const long DecodeBlocksPerSM = 4;

    /// <summary>Fewest keys a decode split gets: below this the combine step costs more than the split saves.</summary>
    public const int MinKeysPerSplit = 64;

    /// <summary>Dynamic shared memory every GPU grants without an opt-in.</summary>
    public const int DefaultDynamicSharedBytes = 48 * 1024;

    /// <summary>Shared memory of a prefill or decode block: Q rows, K tile padded to D+1 floats a row, V tile, all fp32.</summary>
    public static int AttentionSharedBytes(int headDim) =>
        (AttentionRows * headDim + AttentionKeys * (headDim + 1) + AttentionKeys * headDim) * sizeof(float);

    /// <summary>Prefill: one block per (16 query rows, head, sequence).</summary>
    public static LaunchShape AttentionPrefill(int batch, int tokensPerSequence, int heads, int headDim) =>
        new(new Dim3(checked((uint)((tokensPerSequence + AttentionRows - 1) / AttentionRows)), checked((uint)heads), checked((uint)batch)),
            new Dim3(AttentionThreads), (uint)AttentionSharedBytes(headDim));

    /// <summary>
    /// Decode over <paramref name="keys"/> cached keys: enough splits of the keys for about <see cref="DecodeBlocksPerSM"/>
    /// blocks per SM (each split at least <see cref="MinKeysPerSplit"/> keys, a whole number of tiles, at most
    /// <see cref="MaxDecodeSplits"/> splits); grid (splits, kvHeads * ceil(group / 16), batch).
    /// </summary>
    public static AttentionDecodeShape AttentionDecode(int batch, int heads, int kvHeads, int headDim, int keys, int multiprocessors)
    {
        int headBlocks = kvHeads * ((heads / kvHeads + AttentionRows - 1) / AttentionRows);
        long blocksPerSplit = (long)batch * headBlocks;
        int wanted = (int)Math.Clamp((DecodeBlocksPerSM * Math.Max(1, multiprocessors) + blocksPerSplit - 1) / blocksPerSplit, 1, MaxDecodeSplits);
        int perSplit = (keys + wanted - 1) / wanted;
        perSplit = Math.Max(MinKeysPerSplit, (perSplit + AttentionKeys - 1) / AttentionKeys * AttentionKeys);
        int splits = (keys + perSplit - 1) / perSplit;
        var shape = new LaunchShape(new Dim3((uint)splits, checked((uint)headBlocks), checked((uint)batch)), new Dim3(AttentionThreads),
            (uint)AttentionSharedBytes(headDim));
        return new AttentionDecodeShape(shape, perSplit, splits);
    }

    /// <summary>Query rows and keys per attention-backward tile (attention.cu's E3_ATTN_BWD_TILE).</summary>
    public const int AttentionBackwardTile = 16;

    /// <summary>Shared memory of a backward block: Q and dO tiles, K and V tiles padded to D+1 floats a row, P and dS, lse and delta.</summary>
    public static int AttentionBackwardSharedBytes(int headDim) =>
        (2 * AttentionBackwardTile * headDim + 2 * AttentionBackwardTile * (headDim + 1) + 2 * AttentionBackwardTile * AttentionBackwardTile
            + 2 * AttentionBackwardTile) * sizeof(float);

    /// <summary>Backward dQ: one block per (16 query rows, head, sequence).</summary>
    public static LaunchShape AttentionBackwardDq(int batch, int tokensPerSequence, int heads, int headDim) =>
        new(new Dim3(checked((uint)((tokensPerSequence + AttentionBackwardTile - 1) / AttentionBackwardTile)), checked((uint)heads), checked((uint)batch)),
            new Dim3(AttentionThreads), (uint)AttentionBackwardSharedBytes(headDim));

    /// <summary>Backward dK/dV: one block per (16 keys, kv head, sequence), looping over the kv head's query heads.</summary>
    public static LaunchShape AttentionBackwardDkDv(int batch, int tokensPerSequence, int kvHeads, int headDim) =>
        AttentionBackwardDq(batch, tokensPerSequence, kvHeads, headDim);

    /// <summary>Head dim of the tensor-core prefill (attention.cu's E3_MMA_D).</summary>
    public const int TensorCoreHeadDim = 128;

    /// <summary>Query rows per tensor-core prefill block (E3_MMA_ROWS: 16 per warp) and keys per tile (E3_MMA_KEYS).</summary>
    public const int TensorCoreRows = 64, TensorCoreKeys = 64;

    /// <summary>Shared memory of a tensor-core prefill block: one bf16 tile of K and of V, rows padded to 136 (E3_MMA_STRIDE).</summary>
    public const int TensorCoreSharedBytes = 2 * TensorCoreKeys * (TensorCoreHeadDim + 8) * 2;

    /// <summary>Tensor-core prefill: one block of 4 warps per (64 query rows, head, sequence).</summary>
    public static LaunchShape AttentionPrefillTensorCores(int batch, int tokensPerSequence, int heads) =>
        new(new Dim3(checked((uint)((tokensPerSequence + TensorCoreRows - 1) / TensorCoreRows)), checked((uint)heads), checked((uint)batch)),
            new Dim3(AttentionThreads), TensorCoreSharedBytes);

    /// <summary>Decode combine: one warp per (head, sequence).</summary>
    public static LaunchShape AttentionCombine(int batch, int heads) =>
        new(new Dim3(checked((uint)heads), checked((uint)batch)), new Dim3(32));
}

/// <summary>A decode launch: its shape, the keys each block covers and how many splits (blocks along x) there are.</summary>
internal readonly record struct AttentionDecodeShape(LaunchShape Shape, int KeysPerSplit, int Splits);
