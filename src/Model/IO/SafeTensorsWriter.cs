using E3.Interop.IO;
using System.Buffers.Binary;
using System.Text.Json;

namespace E3.Model.IO;

/// <summary>A tensor to be written.</summary>
internal readonly record struct TensorToWrite(string Name, SafeTensorsDType DType, long[] Shape, ReadOnlyMemory<byte> Data);

/// <summary>Where one tensor sits in a file's data area: its header entry without the bytes.</summary>
internal readonly record struct TensorLayout(string Name, SafeTensorsDType DType, long[] Shape, long ByteLength);

/// <summary>Writes safetensors files atomically (temp file, then rename).</summary>
internal static class SafeTensorsWriter
{
    /// <summary>
    /// Writes one .safetensors file: tensors laid out in the given order, header padded with spaces to a multiple
    /// of 8 bytes. Every tensor is checked (unique non-empty name, non-negative shape, data length equal to
    /// dtype size × shape) before the file is created; on any failure neither the target nor a temp file remains.
    /// </summary>
    public static void Write(string path, IEnumerable<TensorToWrite> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        List<TensorToWrite> list = tensors.ToList();
        Validate(path, list);
        WriteValidated(path, list, metadata);
    }

    /// <summary>
    /// Writes <c>model-00001-of-0000N.safetensors</c> shards into <paramref name="folder"/> (created if needed),
    /// filling each shard in order up to <paramref name="maxShardBytes"/> of tensor data (a larger tensor gets a
    /// shard of its own), then <c>model.safetensors.index.json</c> with <c>metadata.total_size</c>. Each file is
    /// written atomically and the index last, so a reader never sees an index naming a shard not yet written.
    /// </summary>
    /// <returns>The path of the index file.</returns>
    public static string WriteSharded(string folder, IEnumerable<TensorToWrite> tensors, long maxShardBytes,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        List<TensorToWrite> list = tensors.ToList();
        string indexPath = Path.Combine(folder, ShardIndex.FileName);
        Validate(indexPath, list);
        List<List<TensorToWrite>> shards = Pack(list, maxShardBytes);
        Directory.CreateDirectory(folder);

        var weightMap = new List<KeyValuePair<string, string>>();
        for (int i = 0; i < shards.Count; i++)
        {
            string shardName = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            WriteValidated(Path.Combine(folder, shardName), shards[i], metadata);
            weightMap.AddRange(shards[i].Select(t => new KeyValuePair<string, string>(t.Name, shardName)));
        }

        using var index = AtomicFile.Create(indexPath);
        using (var json = new Utf8JsonWriter(index.Stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", list.Sum(t => (long)t.Data.Length));
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, shard) in weightMap) json.WriteString(name, shard);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        index.Commit();
        return indexPath;
    }

    /// <summary>
    /// Writes one .safetensors file whose tensors are produced while it is written, so that no more than one of them
    /// need be in memory: the header from <paramref name="tensors"/>, then, for each in order, whatever
    /// <paramref name="writeData"/> writes to the stream it is given, which must be exactly the tensor's byte length.
    /// The layouts are checked as <see cref="Write"/> checks tensors; on any failure (a producer that writes too
    /// little or too much included) neither the target nor a temp file remains.
    /// </summary>
    public static void WriteStreamed(string path, IReadOnlyList<TensorLayout> tensors, Action<int, Stream> writeData,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(writeData);
        Validate(path, tensors);
        byte[] header = HeaderBytes(tensors, metadata);
        using var file = AtomicFile.Create(path);
        WriteHeader(file.Stream, header);
        for (int i = 0; i < tensors.Count; i++)
        {
            long before = file.Stream.Position;
            writeData(i, file.Stream);
            long written = file.Stream.Position - before;
            if (written != tensors[i].ByteLength)
                throw new InvalidOperationException($"{path}: tensor '{tensors[i].Name}': the producer wrote {written} bytes where the header says {tensors[i].ByteLength}");
        }
        file.Commit();
    }

    static List<List<TensorToWrite>> Pack(List<TensorToWrite> tensors, long maxShardBytes) =>
        PackShards(tensors, t => t.Data.Length, maxShardBytes);

    /// <summary>
    /// The sharding policy of <see cref="WriteSharded"/>, for writers that stream tensors themselves: items in order,
    /// a new shard whenever the next one would take the current shard past <paramref name="maxShardBytes"/> (an item
    /// larger than that gets a shard of its own, as transformers does).
    /// </summary>
    public static List<List<T>> PackShards<T>(IEnumerable<T> items, Func<T, long> byteLength, long maxShardBytes)
    {
        var shards = new List<List<T>> { new() };
        long used = 0;
        foreach (T item in items)
        {
            long length = byteLength(item);
            if (shards[^1].Count > 0 && used + length > maxShardBytes)
            {
                shards.Add([]);
                used = 0;
            }
            shards[^1].Add(item);
            used += length;
        }
        return shards;
    }

    static void Validate(string path, List<TensorToWrite> tensors) => Validate(path, Layouts(tensors));

    static void Validate(string path, IEnumerable<TensorLayout> tensors)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (string.IsNullOrEmpty(t.Name) || t.Name == "__metadata__")
                throw new ArgumentException($"{path}: tensor name '{t.Name}' is not allowed", nameof(tensors));
            if (!names.Add(t.Name))
                throw new ArgumentException($"{path}: tensor '{t.Name}' is given twice", nameof(tensors));
            if (t.Shape == null || t.Shape.Any(d => d < 0))
                throw new ArgumentException($"{path}: tensor '{t.Name}': shape {(t.Shape == null ? "null" : ShapeFormat.Brackets(t.Shape))} must be non-negative", nameof(tensors));
            long? needed = ShapeFormat.CheckedProduct(t.Shape, t.DType.SizeInBytes());
            if (needed != t.ByteLength)
                throw new ArgumentException($"{path}: tensor '{t.Name}': {t.ByteLength} data bytes but dtype {t.DType} x shape {ShapeFormat.Brackets(t.Shape)} needs {(needed?.ToString() ?? "more than 2^63")} bytes", nameof(tensors));
        }
    }

    static void WriteValidated(string path, List<TensorToWrite> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        byte[] header = Header(tensors, metadata);
        using var file = AtomicFile.Create(path);
        WriteHeader(file.Stream, header);
        foreach (TensorToWrite t in tensors) file.Stream.Write(t.Data.Span);
        file.Commit();
    }

    static void WriteHeader(Stream stream, byte[] header)
    {
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
    }

    static byte[] Header(List<TensorToWrite> tensors, IReadOnlyDictionary<string, string>? metadata) => HeaderBytes(Layouts(tensors), metadata);

    static IEnumerable<TensorLayout> Layouts(List<TensorToWrite> tensors) => tensors.Select(t => new TensorLayout(t.Name, t.DType, t.Shape, t.Data.Length));

    /// <summary>
    /// The header JSON for tensors laid out back to back in the given order, padded with spaces so that the data
    /// area starts at a multiple of 8 bytes. For callers that stream tensor bytes themselves (e.g. an export
    /// copying from a mapped checkpoint) and so cannot hand every tensor over as one <see cref="TensorToWrite"/> list.
    /// The caller writes the u64 little-endian length of the returned bytes, the bytes, then the data.
    /// </summary>
    public static byte[] HeaderBytes(IEnumerable<TensorLayout> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (TensorLayout t in tensors)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType.ToString());
                json.WriteStartArray("shape");
                foreach (long d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.ByteLength;
            }
            json.WriteEndObject();
        }
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }
}
