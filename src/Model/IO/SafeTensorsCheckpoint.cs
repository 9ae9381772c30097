using System.Buffers.Binary;
using System.Runtime.InteropServices;
using E3.Backends.Numerics;

namespace E3.Model.IO;

/// <summary>
/// A checkpoint folder (model.safetensors, or shards listed by model.safetensors.index.json) or a single
/// .safetensors file, memory-mapped. Every header is validated on open.
/// </summary>
internal sealed class SafeTensorsCheckpoint : IDisposable
{
    /// <summary>The single-file checkpoint name inside a model folder.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The index that lists a sharded checkpoint's files inside a model folder.</summary>
    public const string IndexFileName = ShardIndex.FileName;

    readonly List<SafeTensorsFile> _files;
    readonly Dictionary<string, (SafeTensorsFile File, TensorEntry Entry)> _tensors;
    readonly List<string> _names;
    bool _disposed;

    SafeTensorsCheckpoint(string path, List<SafeTensorsFile> files, Dictionary<string, (SafeTensorsFile, TensorEntry)> tensors,
        List<string> names, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _files = files;
        _tensors = tensors;
        _names = names;
        Metadata = metadata;
    }

    /// <summary>The file or folder this checkpoint was opened from.</summary>
    public string Path { get; }

    /// <summary>
    /// Opens a .safetensors file, or a folder holding model.safetensors (preferred when both exist) or
    /// model.safetensors.index.json with its shards. Throws <see cref="SafeTensorsFormatException"/> for any
    /// header or index that does not agree with the files.
    /// </summary>
    public static SafeTensorsCheckpoint Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (File.Exists(path)) return OpenSingle(path);
        if (!Directory.Exists(path)) throw new FileNotFoundException($"{path}: no such safetensors file or checkpoint folder", path);
        string single = System.IO.Path.Combine(path, SingleFileName);
        if (File.Exists(single)) return OpenSingle(single);
        string index = System.IO.Path.Combine(path, ShardIndex.FileName);
        if (File.Exists(index)) return OpenSharded(index);
        throw new SafeTensorsFormatException(path, null, $"folder holds neither {SingleFileName} nor {ShardIndex.FileName}");
    }

    static SafeTensorsCheckpoint OpenSingle(string path)
    {
        SafeTensorsFile file = SafeTensorsFile.Open(path);
        var tensors = file.Header.Tensors.ToDictionary(t => t.Name, t => (file, t), StringComparer.Ordinal);
        return new SafeTensorsCheckpoint(path, [file], tensors, file.Header.Tensors.Select(t => t.Name).ToList(), file.Header.Metadata);
    }

    static SafeTensorsCheckpoint OpenSharded(string indexPath)
    {
        ShardIndex index = ShardIndex.Load(indexPath);
        string folder = System.IO.Path.GetDirectoryName(indexPath)!;
        var shards = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var (tensor, shardName) in index.WeightMap)
            {
                if (shards.ContainsKey(shardName)) continue;
                string shardPath = System.IO.Path.Combine(folder, shardName);
                if (!File.Exists(shardPath))
                    throw new SafeTensorsFormatException(indexPath, tensor, $"weight_map points at '{shardName}', which does not exist in {folder}");
                shards.Add(shardName, SafeTensorsFile.Open(shardPath));
            }
            var holder = HolderOfEachTensor(shards);
            var tensors = new Dictionary<string, (SafeTensorsFile, TensorEntry)>(StringComparer.Ordinal);
            foreach (var (tensor, shardName) in index.WeightMap)
            {
                SafeTensorsFile shard = shards[shardName];
                if (!holder.TryGetValue(tensor, out var held))
                    throw new SafeTensorsFormatException(indexPath, tensor, $"weight_map says it is in '{shardName}', but that shard does not hold it");
                if (held.File != shard)
                    throw new SafeTensorsFormatException(indexPath, tensor, $"weight_map says it is in '{shardName}', but it is in '{System.IO.Path.GetFileName(held.File.Path)}'");
                tensors.Add(tensor, held);
            }
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (SafeTensorsFile shard in shards.Values)
                foreach (var (key, value) in shard.Header.Metadata) metadata.TryAdd(key, value);
            return new SafeTensorsCheckpoint(indexPath, shards.Values.ToList(), tensors, index.WeightMap.Select(e => e.Key).ToList(), metadata);
        }
        catch
        {
            foreach (SafeTensorsFile shard in shards.Values) shard.Dispose();
            throw;
        }
    }

    static Dictionary<string, (SafeTensorsFile File, TensorEntry Entry)> HolderOfEachTensor(Dictionary<string, SafeTensorsFile> shards)
    {
        var holder = new Dictionary<string, (SafeTensorsFile File, TensorEntry Entry)>(StringComparer.Ordinal);
        foreach (SafeTensorsFile shard in shards.Values)
            foreach (TensorEntry entry in shard.Header.Tensors)
                if (!holder.TryAdd(entry.Name, (shard, entry)))
                    throw new SafeTensorsFormatException(shard.Path, entry.Name, $"appears in two shards: '{holder[entry.Name].File.Path}' and '{shard.Path}'");
        return holder;
    }

    /// <summary>Tensor names, in header (single file) or index (sharded) order.</summary>
    public IReadOnlyCollection<string> Names => _names;

    /// <summary>The <c>__metadata__</c> strings (for shards: all shards' entries, the first shard winning on a clash).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>Header entry; a missing name is an error naming the checkpoint and the tensor.</summary>
    public TensorEntry Get(string name) => Find(name).Entry;

    /// <summary>The tensor's raw bytes, a view over the mapping (valid until Dispose).</summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var (file, entry) = Find(name);
        return file.Bytes(entry);
    }

    /// <summary>The tensor converted to fp32; F32, F16 and BF16 only.</summary>
    public float[] ReadFloat32(string name)
    {
        var (file, entry) = Find(name);
        SafeTensorsDType dtype = entry.DType;
        _ = entry.ComputeType; // rejects every dtype that is not a float type E3 computes with
        ReadOnlySpan<byte> bytes = file.Bytes(entry);
        var values = new float[entry.ElementCount];
        switch (dtype)
        {
            case SafeTensorsDType.F32:
                // Copying bytes, rather than casting the span, is safe whatever the alignment of the offset;
                // the file is little-endian, as is every machine E3 runs on.
                bytes.CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
                break;
            case SafeTensorsDType.F16:
                for (int i = 0; i < values.Length; i++) values[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(bytes[(2 * i)..]);
                break;
            case SafeTensorsDType.BF16:
                // x86-64 reads unaligned ushorts fine, so the mapped bytes can be viewed in place.
                BFloat16.ToSingle(MemoryMarshal.Cast<byte, ushort>(bytes), values);
                break;
        }
        return values;
    }

    (SafeTensorsFile File, TensorEntry Entry) Find(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _tensors.TryGetValue(name, out var found) ? found
            : throw new SafeTensorsFormatException(Path, name, "no such tensor in the checkpoint");
    }

    /// <summary>Unmaps every file; spans handed out earlier become invalid.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (SafeTensorsFile file in _files) file.Dispose();
    }
}
