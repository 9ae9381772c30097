using E3.Backends;

namespace E3.Model.IO;

/// <summary>Every dtype the safetensors format names. E3 computes with F32, F16 and BF16 only.</summary>
internal enum SafeTensorsDType
{
    /// <summary>Boolean, one byte per element.</summary>
    BOOL,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>IEEE 754 half precision: 1 sign, 5 exponent, 10 mantissa bits.</summary>
    F16,
    /// <summary>bfloat16: 1 sign, 8 exponent, 7 mantissa bits.</summary>
    BF16,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>IEEE 754 single precision: 1 sign, 8 exponent, 23 mantissa bits.</summary>
    F32,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>IEEE 754 double precision: 1 sign, 11 exponent, 52 mantissa bits.</summary>
    F64,
    /// <summary>8-bit float: 1 sign, 4 exponent, 3 mantissa bits.</summary>
    F8_E4M3,
    /// <summary>8-bit float: 1 sign, 5 exponent, 2 mantissa bits.</summary>
    F8_E5M2,
}

/// <summary>Facts about <see cref="SafeTensorsDType"/> values: element size, name lookup, compute type.</summary>
internal static class SafeTensorsDTypes
{
    // Enum.TryParse would also accept numeric strings such as "5", which the format never contains.
    static readonly Dictionary<string, SafeTensorsDType> ByName =
        Enum.GetValues<SafeTensorsDType>().ToDictionary(d => d.ToString(), StringComparer.Ordinal);

    /// <summary>Bytes per element.</summary>
    public static int SizeInBytes(this SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.BOOL or SafeTensorsDType.U8 or SafeTensorsDType.I8
            or SafeTensorsDType.F8_E4M3 or SafeTensorsDType.F8_E5M2 => 1,
        SafeTensorsDType.U16 or SafeTensorsDType.I16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
        SafeTensorsDType.U32 or SafeTensorsDType.I32 or SafeTensorsDType.F32 => 4,
        SafeTensorsDType.U64 or SafeTensorsDType.I64 or SafeTensorsDType.F64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>Looks up a dtype by its exact (case-sensitive) safetensors name.</summary>
    public static bool TryParse(string name, out SafeTensorsDType dtype) => ByName.TryGetValue(name, out dtype);

    /// <summary>The backend dtype for F32/F16/BF16; null for every type E3 does not compute with.</summary>
    public static DType? ToComputeType(this SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.F32 => DType.F32,
        SafeTensorsDType.F16 => DType.F16,
        SafeTensorsDType.BF16 => DType.BF16,
        _ => null,
    };

    /// <summary>The safetensors dtype that stores a backend dtype.</summary>
    public static SafeTensorsDType FromComputeType(DType dtype) => dtype switch
    {
        DType.F32 => SafeTensorsDType.F32,
        DType.F16 => SafeTensorsDType.F16,
        DType.BF16 => SafeTensorsDType.BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };
}
