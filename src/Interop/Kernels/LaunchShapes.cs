using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>bf16 as stored on the device (its raw bits); a distinct type so a bf16 buffer cannot be passed where fp32 is expected.</summary>
public readonly record struct Bf16(ushort Bits);

/// <summary>The launch shapes the kernel files document, computed in one place.</summary>
public static class LaunchShapes
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

    /// <summary>One warp per item, <see cref="WarpsPerBlock"/> warps per block.</summary>
    public static LaunchShape WarpPerItem(long items) =>
        new(new Dim3(checked((uint)((items + WarpsPerBlock - 1) / WarpsPerBlock))), new Dim3(32 * WarpsPerBlock));
}
