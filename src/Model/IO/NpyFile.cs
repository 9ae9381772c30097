using E3.Interop.IO;
using System.Runtime.InteropServices;
using System.Text;

namespace E3.Model.IO;

/// <summary>An array read from a .npy file: C-order data and its shape.</summary>
internal sealed record NpyArray<T>(T[] Data, long[] Shape) where T : unmanaged;

/// <summary>Reads and writes NumPy .npy files (little-endian f4/i4/u4/i8, C order).</summary>
internal static class NpyFile
{
    /// <summary>Data starts at a multiple of this, as numpy itself aligns it.</summary>
    const int DataAlignment = 64;

    /// <summary>
    /// Writes a float32 C-order array in format version 1.0, atomically (temp file, then rename). The product of
    /// <paramref name="shape"/> must equal the length of <paramref name="data"/>.
    /// </summary>
    public static void WriteFloat32(string path, ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        foreach (long d in shape)
            if (d < 0) throw new ArgumentException($"{path}: shape {NpyHeader.TupleText(shape)} has a negative dimension", nameof(shape));
        long? count = ShapeFormat.CheckedProduct(shape);
        if (count != data.Length)
            throw new ArgumentException($"{path}: {data.Length} values but shape {NpyHeader.TupleText(shape)} needs {(count?.ToString() ?? "more than 2^63")}", nameof(data));

        byte[] header = Header(NpyHeader.DescrOf(NpyDType.Float32), shape);
        using var file = AtomicFile.Create(path);
        file.Stream.Write(header);
        file.Stream.Write(MemoryMarshal.AsBytes(data));
        file.Commit();
    }

    /// <summary>Writes a (rows, cols) float32 matrix, e.g. logits of T positions over a V-token vocabulary.</summary>
    public static void WriteFloat32(string path, ReadOnlySpan<float> data, long rows, long cols)
        => WriteFloat32(path, data, [rows, cols]);

    /// <summary>Preamble and padded header dictionary, version 1.0.</summary>
    static byte[] Header(string descr, ReadOnlySpan<long> shape)
    {
        string dictionary = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {NpyHeader.TupleText(shape)}, }}";
        const int preamble = 10; // magic (6) + version (2) + header length (2)
        int unpadded = preamble + dictionary.Length + 1; // the dictionary ends with '\n'
        int padding = (DataAlignment - unpadded % DataAlignment) % DataAlignment;
        string text = dictionary + new string(' ', padding) + "\n";
        var header = new byte[preamble + text.Length];
        NpyHeader.Magic.CopyTo(header, 0);
        header[6] = 1;
        header[7] = 0;
        header[8] = (byte)(text.Length & 0xff);
        header[9] = (byte)(text.Length >> 8);
        Encoding.Latin1.GetBytes(text, header.AsSpan(preamble));
        return header;
    }

    /// <summary>Reads and validates only the header (dtype, shape, data offset) of a .npy file.</summary>
    public static NpyHeader ReadHeader(string path)
    {
        using var stream = OpenRead(path);
        return NpyHeader.Read(path, stream);
    }

    /// <summary>
    /// Reads a whole array whose dtype matches <typeparamref name="T"/>: float for &lt;f4, int for &lt;i4,
    /// uint for &lt;u4, long for &lt;i8. A mismatch is an error naming the file and both dtypes.
    /// </summary>
    public static NpyArray<T> Read<T>(string path) where T : unmanaged
    {
        using var stream = OpenRead(path);
        NpyHeader header = NpyHeader.Read(path, stream);
        Type expected = header.DType switch
        {
            NpyDType.Float32 => typeof(float),
            NpyDType.Int32 => typeof(int),
            NpyDType.UInt32 => typeof(uint),
            _ => typeof(long),
        };
        if (typeof(T) != expected)
            throw new NpyFormatException(path, $"holds dtype {header.Descr}, which is read as {expected.Name}, not {typeof(T).Name}");
        long count = header.ElementCount;
        if (count > Array.MaxLength)
            throw new NpyFormatException(path, $"shape {NpyHeader.TupleText(header.Shape)} has {count} elements, more than one array can hold");
        var data = new T[count];
        stream.Position = header.DataOffset;
        stream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
        return new NpyArray<T>(data, header.Shape);
    }

    static FileStream OpenRead(string path) => new(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
}
