using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using E3.Backends;

namespace E3.Model.IO;

/// <summary>
/// Finds NaN or ±∞ in a tensor's raw little-endian bytes: a value whose exponent bits are all ones. A weight file with
/// one would otherwise load and give NaN logits, perplexities and gradients far from the cause. The scan reads the
/// bytes once (the upload reads them too), in parallel chunks for large tensors.
/// </summary>
internal static class NonFiniteScan
{
    const int ChunkElements = 1 << 22;

    /// <summary>The index of the first non-finite element of <paramref name="bytes"/> (F32, F16 or BF16 values), or −1.</summary>
    public static unsafe long IndexOf(ReadOnlySpan<byte> bytes, DType type)
    {
        int size = type.SizeInBytes();
        if (type is not (DType.F32 or DType.F16 or DType.BF16)) throw new ArgumentOutOfRangeException(nameof(type), type, "not a float type");
        if (bytes.Length % size != 0) throw new ArgumentException($"{bytes.Length} bytes are not whole {type} values", nameof(bytes));
        long count = bytes.Length / size;
        fixed (byte* start = bytes)
        {
            nint address = (nint)start;
            int chunks = (int)((count + ChunkElements - 1) / ChunkElements);
            if (chunks <= 1) return Scan(address, 0, count, type);
            long first = long.MaxValue;
            Parallel.For(0, chunks, chunk =>
            {
                long from = (long)chunk * ChunkElements;
                long found = Scan(address, from, Math.Min(count, from + ChunkElements), type);
                if (found < 0) return;
                long seen;
                while (found < (seen = Interlocked.Read(ref first)) && Interlocked.CompareExchange(ref first, found, seen) != seen) { }
            });
            return first == long.MaxValue ? -1 : first;
        }
    }

    /// <summary>What is wrong with weights <paramref name="bytes"/> ("element 17 is NaN: weights must be finite"), or null when every value is finite.</summary>
    public static string? WeightProblem(ReadOnlySpan<byte> bytes, DType type) =>
        IndexOf(bytes, type) is var bad and >= 0 ? $"element {bad} is {ValueAt(bytes, type, bad)}: weights must be finite" : null;

    /// <summary>Element <paramref name="index"/> of <paramref name="bytes"/> as a float, for the error message.</summary>
    public static float ValueAt(ReadOnlySpan<byte> bytes, DType type, long index) => type switch
    {
        DType.F32 => BinaryPrimitives.ReadSingleLittleEndian(bytes[checked((int)(4 * index))..]),
        DType.F16 => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes[checked((int)(2 * index))..]),
        _ => E3.Backends.Numerics.BFloat16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[checked((int)(2 * index))..])),
    };

    static unsafe long Scan(nint address, long from, long to, DType type)
    {
        if (type == DType.F32)
            return Scan(new ReadOnlySpan<uint>((uint*)address + from, checked((int)(to - from))), 0x7F80_0000u, from);
        ushort exponent = type == DType.F16 ? (ushort)0x7C00 : (ushort)0x7F80;
        return Scan(new ReadOnlySpan<ushort>((ushort*)address + from, checked((int)(to - from))), exponent, from);
    }

    // An element is non-finite when (bits & exponent) == exponent.
    static long Scan<T>(ReadOnlySpan<T> values, T exponent, long offset) where T : unmanaged, IBinaryInteger<T>
    {
        var mask = new Vector<T>(exponent);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            for (; i <= values.Length - Vector<T>.Count; i += Vector<T>.Count)
                if (Vector.EqualsAny(new Vector<T>(values[i..]) & mask, mask)) break;
        for (; i < values.Length; i++)
            if ((values[i] & exponent) == exponent) return offset + i;
        return -1;
    }
}
