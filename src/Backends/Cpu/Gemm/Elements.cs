using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace E3.Backends.Cpu.Gemm;

/// <summary>
/// Loads weight elements as fp32 whether they are stored as fp32 or as bf16 bits (<c>ushort</c>).
/// The <c>typeof(T)</c> tests are constants per generic instantiation, so the JIT keeps one branch.
/// </summary>
internal static unsafe class Elements
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1<T>(T* p) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return *(float*)p;
        return BitConverter.Int32BitsToSingle(*(ushort*)p << 16);
    }

    /// <summary>Eight consecutive elements widened to fp32 (AVX2 only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8<T>(T* p) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Avx.LoadVector256((float*)p);
        return Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)p), 16).AsSingle();
    }

    /// <summary>2·Vector&lt;float&gt;.Count consecutive elements widened to fp32, as two vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<T>(T* p, out Vector<float> lo, out Vector<float> hi) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            lo = Vector.Load((float*)p);
            hi = Vector.Load((float*)p + Vector<float>.Count);
            return;
        }
        Vector.Widen(Vector.Load((ushort*)p), out Vector<uint> l, out Vector<uint> h);
        lo = Vector.AsVectorSingle(Vector.ShiftLeft(l, 16));
        hi = Vector.AsVectorSingle(Vector.ShiftLeft(h, 16));
    }
}
