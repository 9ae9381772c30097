namespace E3.Backends;

/// <summary>Element type of a tensor held by a backend.</summary>
public enum DType
{
    F32,
    BF16,
    F16,
}

public static class DTypeExtensions
{
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.BF16 or DType.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };
}
