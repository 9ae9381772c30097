using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace E3.Backends.Cpu.Gemm;

/// <summary>
/// One pinned, 64-byte-aligned pack buffer per thread, grown on demand and reused by every later call,
/// so the hot path allocates nothing once warm. It is managed (pinned-object-heap) memory: no native
/// handle to release, and it goes away with its thread.
/// </summary>
internal static unsafe class PackScratch
{
    private const int AlignFloats = 16;

    [ThreadStatic] private static float[]? t_buffer;

    /// <summary>
    /// Returns at least <paramref name="floats"/> aligned floats owned by the calling thread until its next call.
    /// A task must not call this again while it still uses the previous pointer.
    /// </summary>
    public static float* Get(nint floats)
    {
        float[]? buffer = t_buffer;
        if (buffer is null || buffer.Length < floats + AlignFloats)
        {
            buffer = GC.AllocateUninitializedArray<float>(checked((int)(floats + AlignFloats)), pinned: true);
            t_buffer = buffer;
        }
        float* start = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        nint misalign = (nint)start & (AlignFloats * sizeof(float) - 1);
        return misalign == 0 ? start : (float*)((byte*)start + (AlignFloats * sizeof(float) - misalign));
    }
}
