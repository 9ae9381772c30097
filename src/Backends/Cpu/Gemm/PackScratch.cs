using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace E3.Backends.Cpu.Gemm;

/// <summary>Which of a thread's two pack buffers to use.</summary>
internal enum ScratchSlot
{
    /// <summary>The whole packed left operand, written by the calling thread's GEMM and read by every task.</summary>
    SharedA,

    /// <summary>A task's own packed right-operand block.</summary>
    TaskB,
}

/// <summary>
/// Pinned, 64-byte-aligned pack buffers, two per thread, grown on demand and reused by every later call,
/// so the hot path allocates nothing once warm. They are managed (pinned-object-heap) memory: no native
/// handle to release, and they go away with their thread. The caller of a GEMM keeps its packed A in
/// <see cref="ScratchSlot.SharedA"/> while the same thread also runs tasks that use <see cref="ScratchSlot.TaskB"/>.
/// </summary>
internal static unsafe class PackScratch
{
    private const int AlignFloats = 16;

    [ThreadStatic] private static float[]? t_sharedA;
    [ThreadStatic] private static float[]? t_taskB;

    /// <summary>
    /// Returns at least <paramref name="floats"/> aligned floats owned by the calling thread until its next call
    /// for the same slot. Contents are not preserved across calls.
    /// </summary>
    public static float* Get(ScratchSlot slot, nint floats)
    {
        ref float[]? cached = ref slot == ScratchSlot.SharedA ? ref t_sharedA : ref t_taskB;
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
