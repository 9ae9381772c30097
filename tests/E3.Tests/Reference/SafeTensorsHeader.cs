using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace E3.Tests.Reference;

/// <summary>One tensor's entry in a safetensors header: byte range relative to the start of the data section.</summary>
internal sealed record SafeTensorsEntry(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (n, d) => checked(n * d));
}

/// <summary>
/// Parses the safetensors layout by hand: an 8-byte little-endian header length, a JSON header mapping names to
/// dtype/shape/data_offsets, then the raw data. Every inconsistency is an error naming the file and tensor.
/// </summary>
internal sealed class SafeTensorsHeader
{
    // The safetensors library refuses headers above 100 MB; a larger length is a corrupt or foreign file.
    private const long MaxHeaderBytes = 100_000_000;

    private SafeTensorsHeader(string path, long dataStart, IReadOnlyList<SafeTensorsEntry> entries)
    {
        Path = path;
        DataStart = dataStart;
        Entries = entries;
    }

    public string Path { get; }

    /// <summary>File offset of the data section (8 + header length).</summary>
    public long DataStart { get; }

    public IReadOnlyList<SafeTensorsEntry> Entries { get; }

    /// <summary>Bytes per element of a stored dtype the reference can decode, or 0 when unsupported.</summary>
    public static int ElementSize(string dtype) => dtype switch
    {
        "F64" => 8,
        "F32" => 4,
        "F16" or "BF16" => 2,
        _ => 0,
    };

    public static SafeTensorsHeader Read(string path)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        long fileLength = RandomAccess.GetLength(file);
        Span<byte> lengthBytes = stackalloc byte[8];
        if (fileLength < 8 || RandomAccess.Read(file, lengthBytes, 0) != 8)
        {
            throw new ReferenceCheckpointException(path, "header length", $"cannot be read: the file has only {fileLength} bytes");
        }

        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > MaxHeaderBytes || (long)headerLength > fileLength - 8)
        {
            throw new ReferenceCheckpointException(path, "header length", $"has value {headerLength}, but the file has {fileLength} bytes (limit {MaxHeaderBytes})");
        }

        var headerBytes = new byte[headerLength];
        ReadExactly(file, headerBytes, 8, path);
        long dataStart = 8 + (long)headerLength;
        var entries = ParseEntries(path, headerBytes, fileLength - dataStart);
        return new SafeTensorsHeader(path, dataStart, entries);
    }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="offset"/>, failing on a short file.</summary>
    public static void ReadExactly(Microsoft.Win32.SafeHandles.SafeFileHandle file, Span<byte> buffer, long offset, string path)
    {
        while (!buffer.IsEmpty)
        {
            int read = RandomAccess.Read(file, buffer, offset);
            if (read <= 0)
            {
                throw new ReferenceCheckpointException(path, "data", $"ends early at byte {offset}");
            }

            buffer = buffer[read..];
            offset += read;
        }
    }

    private static List<SafeTensorsEntry> ParseEntries(string path, byte[] headerBytes, long dataLength)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes);
        }
        catch (JsonException e)
        {
            throw new ReferenceCheckpointException(path, "header", $"is not valid JSON: {e.Message}");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new ReferenceCheckpointException(path, "header", $"is a JSON {document.RootElement.ValueKind}, not an object");
            }

            var entries = new List<SafeTensorsEntry>();
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    continue;
                }

                var entry = ParseEntry(path, property);
                CheckRange(path, entry, dataLength);
                entries.Add(entry);
            }

            return entries;
        }
    }

    private static SafeTensorsEntry ParseEntry(string path, JsonProperty property)
    {
        string name = property.Name;
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
        {
            throw new ReferenceCheckpointException(path, name, $"has header entry {value.GetRawText()}; expected {{dtype, shape, data_offsets:[begin,end]}}");
        }

        var dims = new long[shape.GetArrayLength()];
        int i = 0;
        foreach (var dim in shape.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out dims[i]) || dims[i] < 0)
            {
                throw new ReferenceCheckpointException(path, $"{name}.shape", $"has value {shape.GetRawText()}; dimensions must be non-negative integers");
            }

            i++;
        }

        long[] range = new long[2];
        i = 0;
        foreach (var offset in offsets.EnumerateArray())
        {
            if (offset.ValueKind != JsonValueKind.Number || !offset.TryGetInt64(out range[i]) || range[i] < 0)
            {
                throw new ReferenceCheckpointException(path, $"{name}.data_offsets", $"has value {offsets.GetRawText()}; offsets must be non-negative integers");
            }

            i++;
        }

        return new SafeTensorsEntry(name, dtype.GetString()!, dims, range[0], range[1]);
    }

    private static void CheckRange(string path, SafeTensorsEntry entry, long dataLength)
    {
        int elementSize = ElementSize(entry.DType);
        if (elementSize == 0)
        {
            throw new ReferenceCheckpointException(path, $"{entry.Name}.dtype", $"has value \"{entry.DType}\"; supported: F64, F32, F16, BF16");
        }

        long expectedBytes;
        try
        {
            expectedBytes = checked(entry.ElementCount * elementSize);
        }
        catch (OverflowException)
        {
            throw new ReferenceCheckpointException(path, $"{entry.Name}.shape", $"has value [{string.Join(", ", entry.Shape)}], whose size overflows");
        }

        if (entry.End < entry.Begin || entry.End - entry.Begin != expectedBytes || entry.End > dataLength)
        {
            throw new ReferenceCheckpointException(
                path,
                $"{entry.Name}.data_offsets",
                $"has value [{entry.Begin}, {entry.End}]; {entry.DType} [{string.Join(", ", entry.Shape)}] needs {expectedBytes} bytes inside a data section of {dataLength} bytes");
        }
    }

    /// <summary>The UTF-8 header JSON for <paramref name="entries"/>, padded with spaces to 8-byte alignment as safetensors does.</summary>
    public static byte[] Encode(IEnumerable<SafeTensorsEntry> entries)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            json.WriteString("format", "pt");
            json.WriteEndObject();
            foreach (var entry in entries)
            {
                json.WriteStartObject(entry.Name);
                json.WriteString("dtype", entry.DType);
                json.WriteStartArray("shape");
                foreach (long dim in entry.Shape)
                {
                    json.WriteNumberValue(dim);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(entry.Begin);
                json.WriteNumberValue(entry.End);
                json.WriteEndArray();
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        int padding = (int)((8 - buffer.Length % 8) % 8);
        buffer.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));
        return buffer.ToArray();
    }
}
