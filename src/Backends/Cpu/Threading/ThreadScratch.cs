using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace E3.Backends.Cpu.Threading;

/// <summary>Which of a thread's scratch buffers to use.</summary>
internal enum ScratchSlot
{
    /// <summary>A GEMM's whole packed left operand, written by the calling thread and read by every task.</summary>
    GemmSharedA,

    /// <summary>A GEMM task's own packed right-operand block.</summary>
    GemmTaskB,

    /// <summary>An attention work item's score tile.</summary>
    AttentionScores,

    /// <summary>An attention work item's second tile (dP, then dS, in the backward).</summary>
    AttentionGradients,
}

/// <summary>
/// Pinned, 64-byte-aligned scratch buffers, one per slot and thread, grown on demand and reused by every later call,
/// so the hot paths allocate nothing once warm. They are managed (pinned-object-heap) memory: no native handle to
/// release, and they go away with their thread. A GEMM's caller keeps its packed A in <see cref="ScratchSlot.GemmSharedA"/>
/// while the same thread also runs tasks that use <see cref="ScratchSlot.GemmTaskB"/>; attention items use their own two.
/// </summary>
internal static unsafe class ThreadScratch
{
    private const int AlignFloats = 16;

    [ThreadStatic] private static float[]?[]? t_buffers;

    /// <summary>
    /// Returns at least <paramref name="floats"/> aligned floats owned by the calling thread until its next call
    /// for the same slot. Contents are not preserved across calls.
    /// </summary>
    public static float* Get(ScratchSlot slot, nint floats)
    {
        var buffers = t_buffers ??= new float[]?[Enum.GetValues<ScratchSlot>().Length];
        ref float[]? cached = ref buffers[(int)slot];
        float[]? buffer = cached;
        if (buffer is null || buffer.Length < floats + AlignFloats)
        {
            buffer = GC.AllocateUninitializedArray<float>(checked((int)(floats + AlignFloats)), pinned: true);
            cached = buffer;
        }
        float* start = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        nint misalign = (nint)start & (AlignFloats * sizeof(float) - 1);
        return misalign == 0 ? start : (float*)((byte*)start + (AlignFloats * sizeof(float) - misalign));
    }
}
