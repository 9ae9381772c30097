using System.Buffers.Binary;
using System.Text;

namespace E3.Model.IO;

/// <summary>Element types E3 reads from .npy files, with their numpy descr strings.</summary>
internal enum NpyDType
{
    /// <summary>'&lt;f4'</summary>
    Float32,
    /// <summary>'&lt;i4'</summary>
    Int32,
    /// <summary>'&lt;u4'</summary>
    UInt32,
    /// <summary>'&lt;i8'</summary>
    Int64,
}

/// <summary>A validated .npy header: dtype, C-order shape and where the data starts.</summary>
internal sealed record NpyHeader(NpyDType DType, long[] Shape, long DataOffset)
{
    internal static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Longest header dictionary accepted; numpy writes well under 1 KiB.</summary>
    internal const int MaxHeaderBytes = 1 << 20;

    /// <summary>Number of elements (1 for a 0-d array).</summary>
    public long ElementCount => ShapeFormat.CheckedProduct(Shape) ?? throw new OverflowException("shape product overflows");

    public int ItemSize => DType == NpyDType.Int64 ? 8 : 4;

    public string Descr => DescrOf(DType);

    internal static string DescrOf(NpyDType dtype) => dtype switch
    {
        NpyDType.Float32 => "<f4",
        NpyDType.Int32 => "<i4",
        NpyDType.UInt32 => "<u4",
        NpyDType.Int64 => "<i8",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The shape as numpy prints a tuple: (), (5,), (2, 3).</summary>
    internal static string TupleText(ReadOnlySpan<long> shape)
        => shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape.ToArray()) + ")";

    /// <summary>Reads and validates the header of an open .npy stream, including the data length against the shape.</summary>
    internal static NpyHeader Read(string file, Stream stream)
    {
        long fileLength = stream.Length;
        Span<byte> preamble = stackalloc byte[12];
        if (fileLength < 10) throw Fail(file, $"file is {fileLength} bytes, too short for the 10-byte .npy preamble");
        stream.ReadExactly(preamble[..10]);
        if (!preamble[..6].SequenceEqual(Magic))
            throw Fail(file, $"bad magic {Convert.ToHexString(preamble[..6])}, expected 934E554D5059 (\\x93NUMPY)");
        byte major = preamble[6], minor = preamble[7];
        long headerLength, headerStart;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(preamble[8..10]);
            headerStart = 10;
        }
        else if (major is 2 or 3)
        {
            if (fileLength < 12) throw Fail(file, $"file is {fileLength} bytes, too short for the 12-byte version {major} preamble");
            stream.ReadExactly(preamble[10..12]);
            headerLength = BinaryPrimitives.ReadUInt32LittleEndian(preamble[8..12]);
            headerStart = 12;
        }
        else throw Fail(file, $"unsupported format version {major}.{minor} (supported: 1.0, 2.0, 3.0)");
        if (headerLength > fileLength - headerStart)
            throw Fail(file, $"header length {headerLength} runs past the end of the file ({fileLength} bytes)");
        if (headerLength > MaxHeaderBytes)
            throw Fail(file, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        var text = new byte[headerLength];
        stream.ReadExactly(text);
        // Versions 1 and 2 store the dictionary in latin-1, version 3 in UTF-8.
        string dictionary = major == 3 ? Encoding.UTF8.GetString(text) : Encoding.Latin1.GetString(text);
        var header = FromDictionary(file, NpyDictionaryParser.Parse(file, dictionary), headerStart + headerLength);

        long? needed = ShapeFormat.CheckedProduct(header.Shape, header.ItemSize);
        long present = fileLength - header.DataOffset;
        if (needed != present)
            throw Fail(file, $"data is {present} bytes but shape {TupleText(header.Shape)} of {header.Descr} needs {(needed?.ToString() ?? "more than 2^63")} bytes");
        return header;
    }

    static NpyHeader FromDictionary(string file, IReadOnlyDictionary<string, object> fields, long dataOffset)
    {
        if (!fields.TryGetValue("descr", out object? descrValue) || descrValue is not string descr)
            throw Fail(file, "header has no string 'descr'");
        NpyDType dtype = descr switch
        {
            "<f4" => NpyDType.Float32,
            "<i4" => NpyDType.Int32,
            "<u4" => NpyDType.UInt32,
            "<i8" => NpyDType.Int64,
            _ => throw Fail(file, $"unsupported dtype '{descr}' (supported: <f4, <i4, <u4, <i8)"),
        };
        if (!fields.TryGetValue("fortran_order", out object? orderValue) || orderValue is not bool fortran)
            throw Fail(file, "header has no boolean 'fortran_order'");
        if (fortran) throw Fail(file, "fortran_order is True; only C-order arrays are supported");
        if (!fields.TryGetValue("shape", out object? shapeValue) || shapeValue is not long[] shape)
            throw Fail(file, "header has no 'shape' tuple of integers");
        foreach (long d in shape)
            if (d < 0) throw Fail(file, $"shape {TupleText(shape)} has negative dimension {d}");
        return new NpyHeader(dtype, shape, dataOffset);
    }

    static NpyFormatException Fail(string file, string problem) => new(file, problem);
}
