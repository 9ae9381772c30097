namespace E3.Backends;

/// <summary>Element type of a tensor held by a backend.</summary>
public enum DType
{
    /// <summary>IEEE 754 single precision: 4 bytes per element.</summary>
    F32,
    /// <summary>bfloat16 (1 sign, 8 exponent, 7 mantissa bits): 2 bytes per element.</summary>
    BF16,
    /// <summary>IEEE 754 half precision (1 sign, 5 exponent, 10 mantissa bits): 2 bytes per element.</summary>
    F16,
}

internal static class DTypeExtensions
{
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.BF16 or DType.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };
}
