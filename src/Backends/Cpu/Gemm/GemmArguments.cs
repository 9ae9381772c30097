namespace E3.Backends.Cpu.Gemm;

/// <summary>Rejects negative sizes and missing buffers before any pointer is touched.</summary>
internal static unsafe class GemmArguments
{
    public static void CheckSizes(int m, int k, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
    }

    /// <summary>A zero-sized operand may come with a null pointer; a non-empty one may not.</summary>
    public static void CheckBuffer(void* buffer, long rows, long cols, string name)
    {
        if (buffer == null && rows * cols > 0)
            throw new ArgumentNullException(name, $"{name} is null but holds {rows}x{cols} elements");
    }
}
