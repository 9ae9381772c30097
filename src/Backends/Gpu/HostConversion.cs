using System.Runtime.InteropServices;
using E3.Backends.Numerics;

namespace E3.Backends.Gpu;

/// <summary>Element conversions done on the host around copies, in chunks so no full-size second buffer is needed.</summary>
internal static class HostConversion
{
    /// <summary>Elements per chunk: 256 KiB of fp32, small enough for the array pool, large enough to amortise a copy.</summary>
    public const int ChunkElements = 1 << 16;

    /// <summary>Widens <paramref name="raw"/> values of <paramref name="type"/> to fp32.</summary>
    public static void ToSingle(ReadOnlySpan<byte> raw, DType type, Span<float> dst)
    {
        switch (type)
        {
            case DType.F32: MemoryMarshal.Cast<byte, float>(raw).CopyTo(dst); break;
            case DType.BF16: BFloat16.ToSingle(MemoryMarshal.Cast<byte, ushort>(raw), dst); break;
            case DType.F16:
                var halves = MemoryMarshal.Cast<byte, Half>(raw);
                for (int i = 0; i < halves.Length; i++) dst[i] = (float)halves[i];
                break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "unknown dtype");
        }
    }

    /// <summary>Narrows fp32 values to <paramref name="type"/> (F32 or BF16, round to nearest even) into <paramref name="raw"/>.</summary>
    public static void FromSingle(ReadOnlySpan<float> values, DType type, Span<byte> raw)
    {
        switch (type)
        {
            case DType.F32: values.CopyTo(MemoryMarshal.Cast<byte, float>(raw)); break;
            case DType.BF16: BFloat16.FromSingle(values, MemoryMarshal.Cast<byte, ushort>(raw)); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "the gpu backend stores F32 or BF16");
        }
    }
}
