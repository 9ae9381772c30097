using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Unicode;

namespace E3.Model.IO;

/// <summary>
/// A safetensors header parsed and checked against the file it came from: every entry's dtype, shape and
/// offsets are consistent with each other and with the data area, and no two tensors share bytes.
/// </summary>
internal sealed class SafeTensorsHeader
{
    /// <summary>
    /// Larger headers are rejected before anything is allocated; the reference implementation uses the same
    /// 100 MB limit, far above any real checkpoint's header.
    /// </summary>
    public const long MaxHeaderBytes = 100_000_000;

    SafeTensorsHeader(IReadOnlyList<TensorEntry> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>Entries in header order.</summary>
    public IReadOnlyList<TensorEntry> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Reads and validates the header at the start of a mapped file.</summary>
    public static SafeTensorsHeader Read(MappedFile map)
    {
        string file = map.Path;
        if (map.Length < 8)
            throw Fail(file, null, $"file is {map.Length} bytes, shorter than the 8-byte header length field");
        ulong declared = BinaryPrimitives.ReadUInt64LittleEndian(map.Span(0, 8));
        if (declared > (ulong)(map.Length - 8))
            throw Fail(file, null, $"header length {declared} runs past the end of the file ({map.Length} bytes, so at most {map.Length - 8})");
        if (declared > MaxHeaderBytes)
            throw Fail(file, null, $"header length {declared} exceeds the {MaxHeaderBytes}-byte limit");
        long headerLength = (long)declared;
        return Parse(file, map.Span(8, headerLength), dataStart: 8 + headerLength, dataLength: map.Length - 8 - headerLength);
    }

    /// <summary>Parses header JSON whose data area starts at <paramref name="dataStart"/> and holds <paramref name="dataLength"/> bytes.</summary>
    public static SafeTensorsHeader Parse(string file, ReadOnlySpan<byte> json, long dataStart, long dataLength)
    {
        if (!Utf8.IsValid(json)) throw Fail(file, null, "header is not valid UTF-8");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json.ToArray());
        }
        catch (JsonException e)
        {
            throw Fail(file, null, $"header is not well-formed JSON: {e.Message}");
        }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw Fail(file, null, $"header is a JSON {root.ValueKind}, not an object");
            var tensors = new List<TensorEntry>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            IReadOnlyDictionary<string, string> metadata = new Dictionary<string, string>();
            foreach (JsonProperty property in root.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    metadata = ParseMetadata(file, property.Value);
                    continue;
                }
                if (!names.Add(property.Name)) throw Fail(file, property.Name, "appears twice in the header");
                tensors.Add(ParseEntry(file, property.Name, property.Value, dataStart, dataLength));
            }
            CheckNoOverlap(file, tensors, dataStart);
            return new SafeTensorsHeader(tensors, metadata);
        }
    }

    static IReadOnlyDictionary<string, string> ParseMetadata(string file, JsonElement value)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (value.ValueKind == JsonValueKind.Null) return metadata;
        if (value.ValueKind != JsonValueKind.Object)
            throw Fail(file, null, $"__metadata__ is a JSON {value.ValueKind}, not an object of strings");
        foreach (JsonProperty entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw Fail(file, null, $"__metadata__ key '{entry.Name}' holds {entry.Value.GetRawText()}, not a string");
            metadata[entry.Name] = entry.Value.GetString()!;
        }
        return metadata;
    }

    static TensorEntry ParseEntry(string file, string name, JsonElement entry, long dataStart, long dataLength)
    {
        if (entry.ValueKind != JsonValueKind.Object)
            throw Fail(file, name, $"entry is a JSON {entry.ValueKind}, not an object");

        if (!entry.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Fail(file, name, "entry has no string 'dtype'");
        string dtypeName = dtypeElement.GetString()!;
        if (!SafeTensorsDTypes.TryParse(dtypeName, out SafeTensorsDType dtype))
            throw Fail(file, name, $"unknown dtype '{dtypeName}' (known: {string.Join(", ", Enum.GetNames<SafeTensorsDType>())})");

        if (!entry.TryGetProperty("shape", out JsonElement shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Fail(file, name, "entry has no 'shape' array");
        var shape = new long[shapeElement.GetArrayLength()];
        int axis = 0;
        foreach (JsonElement dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long size) || size < 0)
                throw Fail(file, name, $"shape {shapeElement.GetRawText()} has dimension {dim.GetRawText()} at axis {axis}, which is not a non-negative integer");
            shape[axis++] = size;
        }

        if (!entry.TryGetProperty("data_offsets", out JsonElement offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array
            || offsetsElement.GetArrayLength() != 2)
            throw Fail(file, name, $"data_offsets must be an array [begin, end], found {(offsetsElement.ValueKind == JsonValueKind.Undefined ? "nothing" : offsetsElement.GetRawText())}");
        long begin = Offset(file, name, offsetsElement, 0);
        long end = Offset(file, name, offsetsElement, 1);
        if (begin > end)
            throw Fail(file, name, $"data_offsets [{begin}, {end}) begin after they end");
        if (end > dataLength)
            throw Fail(file, name, $"data_offsets [{begin}, {end}) lie outside the data area of {dataLength} bytes");

        long? needed = ShapeFormat.CheckedProduct(shape, dtype.SizeInBytes());
        if (needed == null)
            throw Fail(file, name, $"dtype {dtype} x shape {ShapeFormat.Brackets(shape)} overflows a 64-bit byte count");
        if (end - begin != needed)
            throw Fail(file, name, $"data_offsets [{begin}, {end}) hold {end - begin} bytes but dtype {dtype} x shape {ShapeFormat.Brackets(shape)} needs {needed} bytes");
        return new TensorEntry(name, dtype, shape, dataStart + begin, end - begin, file);
    }

    static long Offset(string file, string name, JsonElement offsets, int index)
    {
        JsonElement value = offsets[index];
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long offset) || offset < 0)
            throw Fail(file, name, $"data_offsets {offsets.GetRawText()} has {value.GetRawText()}, which is not a non-negative integer");
        return offset;
    }

    static void CheckNoOverlap(string file, List<TensorEntry> tensors, long dataStart)
    {
        // Empty tensors own no bytes, so they cannot collide with anything.
        var sorted = tensors.Where(t => t.ByteLength > 0).OrderBy(t => t.DataOffset).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            TensorEntry previous = sorted[i - 1], current = sorted[i];
            if (previous.DataOffset + previous.ByteLength > current.DataOffset)
                throw Fail(file, current.Name,
                    $"data_offsets {Range(current, dataStart)} overlap tensor '{previous.Name}' at {Range(previous, dataStart)}");
        }
    }

    static string Range(TensorEntry t, long dataStart) => $"[{t.DataOffset - dataStart}, {t.DataOffset - dataStart + t.ByteLength})";

    static SafeTensorsFormatException Fail(string file, string? tensor, string problem) => new(file, tensor, problem);
}
