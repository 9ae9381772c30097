using System.Runtime.CompilerServices;

namespace E3.Backends.Numerics;

/// <summary>bf16 &lt;-&gt; fp32 conversion with round-to-nearest-even, as torch and our kernels do it.</summary>
internal static class BFloat16
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromSingle(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40); // quiet NaN, keep sign
        uint roundingBias = 0x7fffu + ((u >> 16) & 1u);
        return (ushort)((u + roundingBias) >> 16);
    }

    public static void ToSingle(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException("destination too short", nameof(dst));
        for (int i = 0; i < src.Length; i++) dst[i] = ToSingle(src[i]);
    }

    public static void FromSingle(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException("destination too short", nameof(dst));
        for (int i = 0; i < src.Length; i++) dst[i] = FromSingle(src[i]);
    }

    /// <summary>Rounds every value to the nearest bf16 and back, in place.</summary>
    public static void Round(Span<float> values)
    {
        for (int i = 0; i < values.Length; i++) values[i] = ToSingle(FromSingle(values[i]));
    }
}
