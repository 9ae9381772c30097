// API CONTRACT (to be implemented): the safetensors reader/writer. Signatures are fixed; bodies throw until implemented.
using E3.Backends;

namespace E3.Model.IO;

/// <summary>Every dtype the safetensors format names. E3 computes with F32, F16 and BF16 only.</summary>
public enum SafeTensorsDType { BOOL, U8, I8, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64, F8_E4M3, F8_E5M2 }

/// <summary>One tensor's header entry, already validated against the file.</summary>
public sealed record TensorEntry(string Name, SafeTensorsDType DType, long[] Shape, long DataOffset, long ByteLength, string File)
{
    /// <summary>The compute dtype, or a clear error naming file, tensor and dtype for types E3 does not compute with.</summary>
    public DType ComputeType => throw new NotImplementedException();
}

/// <summary>
/// A checkpoint folder (model.safetensors, or shards listed by model.safetensors.index.json) or a single
/// .safetensors file, memory-mapped. Every header is validated on open.
/// </summary>
public sealed class SafeTensorsCheckpoint : IDisposable
{
    public static SafeTensorsCheckpoint Open(string path) => throw new NotImplementedException();
    public IReadOnlyCollection<string> Names => throw new NotImplementedException();
    public IReadOnlyDictionary<string, string> Metadata => throw new NotImplementedException();
    public bool Contains(string name) => throw new NotImplementedException();
    /// <summary>Header entry; a missing name is an error naming the checkpoint and the tensor.</summary>
    public TensorEntry Get(string name) => throw new NotImplementedException();
    /// <summary>The tensor's raw bytes, a view over the mapping (valid until Dispose).</summary>
    public ReadOnlySpan<byte> GetBytes(string name) => throw new NotImplementedException();
    /// <summary>The tensor converted to fp32.</summary>
    public float[] ReadFloat32(string name) => throw new NotImplementedException();
    public void Dispose() { }
}

/// <summary>A tensor to be written.</summary>
public readonly record struct TensorToWrite(string Name, SafeTensorsDType DType, long[] Shape, ReadOnlyMemory<byte> Data);

/// <summary>Writes safetensors files atomically (temp file, then rename).</summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IEnumerable<TensorToWrite> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => throw new NotImplementedException();
}
