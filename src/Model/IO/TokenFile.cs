using E3.Interop.IO;
using System.Runtime.InteropServices;

namespace E3.Model.IO;

/// <summary>
/// Token ids read from a raw little-endian uint32 <c>.bin</c> file or an integer <c>.npy</c> array (1-D, or
/// 2-D flattened in C order).
/// </summary>
internal sealed class TokenFile
{
    TokenFile(string path, int[] ids)
    {
        Path = path;
        Ids = ids;
    }

    /// <summary>The file the ids came from.</summary>
    public string Path { get; }

    /// <summary>The ids in file order.</summary>
    public int[] Ids { get; }

    /// <summary>Reads <c>.bin</c> (uint32) or <c>.npy</c> (&lt;i4, &lt;u4 or &lt;i8); ids must fit in an int.</summary>
    public static TokenFile Read(string path)
    {
        string extension = System.IO.Path.GetExtension(path).ToLowerInvariant();
        return extension switch
        {
            ".bin" => new TokenFile(path, ReadBin(path)),
            ".npy" => new TokenFile(path, ReadNpy(path)),
            _ => throw new TokenFileException(path, $"extension '{extension}' is neither .bin (raw uint32) nor .npy"),
        };
    }

    /// <summary>Writes <paramref name="ids"/> as a raw little-endian uint32 <c>.bin</c> file, atomically.</summary>
    public static void WriteBin(string path, ReadOnlySpan<int> ids)
    {
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] < 0) throw new ArgumentOutOfRangeException(nameof(ids), ids[i], $"token at index {i} is negative");
        using var file = AtomicFile.Create(path);
        if (BitConverter.IsLittleEndian) file.Stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids));
        else
        {
            Span<byte> word = stackalloc byte[4];
            foreach (int id in ids)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(word, (uint)id);
                file.Stream.Write(word);
            }
        }
        file.Commit();
    }

    /// <summary>Throws, naming the file, the index and the value, for the first id outside [0, vocabSize).</summary>
    public void Validate(int vocabSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        for (int i = 0; i < Ids.Length; i++)
            if ((uint)Ids[i] >= (uint)vocabSize)
                throw new TokenFileException(Path, $"token at index {i} is {Ids[i]}, outside the vocabulary [0, {vocabSize})");
    }

    static int[] ReadBin(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long length = stream.Length;
        if (length % 4 != 0) throw new TokenFileException(path, $"length {length} bytes is not a multiple of 4 (uint32 ids)");
        if (length / 4 > Array.MaxLength) throw new TokenFileException(path, $"{length / 4} ids are more than one array can hold");
        var ids = new int[length / 4];
        stream.ReadExactly(MemoryMarshal.AsBytes(ids.AsSpan()));
        // Read as int, a stored uint32 of 2^31 or more comes out negative.
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] < 0) throw new TokenFileException(path, $"token at index {i} is {(uint)ids[i]}, beyond the largest id {int.MaxValue}");
        return ids;
    }

    static int[] ReadNpy(string path)
    {
        NpyHeader header = NpyFile.ReadHeader(path);
        if (header.Shape.Length is not (1 or 2))
            throw new TokenFileException(path, $"shape {NpyHeader.TupleText(header.Shape)} is not 1-D or 2-D");
        switch (header.DType)
        {
            case NpyDType.Int32:
                return NpyFile.Read<int>(path).Data;
            case NpyDType.UInt32:
                uint[] unsigned = NpyFile.Read<uint>(path).Data;
                for (int i = 0; i < unsigned.Length; i++)
                    if (unsigned[i] > int.MaxValue) throw new TokenFileException(path, $"token at index {i} is {unsigned[i]}, beyond the largest id {int.MaxValue}");
                return MemoryMarshal.Cast<uint, int>(unsigned).ToArray();
            case NpyDType.Int64:
                long[] wide = NpyFile.Read<long>(path).Data;
                var ids = new int[wide.Length];
                for (int i = 0; i < wide.Length; i++)
                    ids[i] = wide[i] is >= int.MinValue and <= int.MaxValue ? (int)wide[i]
                        : throw new TokenFileException(path, $"token at index {i} is {wide[i]}, outside the int range of ids");
                return ids;
            default:
                throw new TokenFileException(path, $"dtype {header.Descr} is not an integer dtype (<i4, <u4, <i8)");
        }
    }
}
