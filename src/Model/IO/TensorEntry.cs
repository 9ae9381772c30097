using E3.Backends;

namespace E3.Model.IO;

/// <summary>One tensor's header entry, already validated against the file.</summary>
/// <param name="Name">The tensor's name in the header.</param>
/// <param name="DType">The stored element type.</param>
/// <param name="Shape">Dimensions, outermost first; empty for a 0-d (scalar) tensor.</param>
/// <param name="DataOffset">Absolute offset of the first byte in <paramref name="File"/> (not relative to the data area).</param>
/// <param name="ByteLength">Bytes the tensor occupies: element size times the product of the shape.</param>
/// <param name="File">The .safetensors file holding the bytes.</param>
internal sealed record TensorEntry(string Name, SafeTensorsDType DType, long[] Shape, long DataOffset, long ByteLength, string File)
{
    /// <summary>The compute dtype, or a clear error naming file, tensor and dtype for types E3 does not compute with.</summary>
    public DType ComputeType => DType.ToComputeType()
        ?? throw new SafeTensorsFormatException(File, Name, $"dtype {DType} is not one E3 computes with (F32, F16, BF16)");

    /// <summary>Number of elements: the product of the shape (1 for a 0-d tensor).</summary>
    public long ElementCount => ByteLength / DType.SizeInBytes();

    /// <summary>The shape as it appears in messages, e.g. [16, 4].</summary>
    public string ShapeText => ShapeFormat.Brackets(Shape);
}

/// <summary>Renders shapes the same way in every message.</summary>
internal static class ShapeFormat
{
    public static string Brackets(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    /// <summary>Product of the dimensions with overflow detection; null when it does not fit in a long.</summary>
    public static long? CheckedProduct(ReadOnlySpan<long> shape, long factor = 1)
    {
        // An empty dimension makes the tensor empty however large the others are.
        if (shape.Contains(0L)) return 0;
        try
        {
            long product = factor;
            foreach (long d in shape) product = checked(product * d);
            return product;
        }
        catch (OverflowException)
        {
            return null;
        }
    }
}
