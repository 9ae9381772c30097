using E3.Interop.Gpu;

namespace E3.Backends.Gpu;

/// <summary>
/// One reusable device buffer of int32 indices (token ids, row numbers), grown when a call needs more. Reuse is safe
/// because every upload and every kernel reading it is queued on the same stream, in order.
/// </summary>
internal sealed class DeviceIndexBuffer(IGpuDevice device, GpuStream stream) : IDisposable
{
    DeviceBuffer? _buffer;

    /// <summary>Queues the copy of <paramref name="values"/> and returns where the kernels will find them.</summary>
    public DevicePointer<int> Upload(ReadOnlySpan<int> values)
    {
        var pointer = Reserve(values.Length);
        device.CopyToDevice(pointer, values, stream);
        return pointer;
    }

    /// <summary>Room for <paramref name="count"/> indices (kernel outputs); earlier contents are not kept when it grows.</summary>
    public DevicePointer<int> Reserve(int count)
    {
        long bytes = Math.Max(1, count) * (long)sizeof(int);
        if (_buffer is null || _buffer.Bytes < bytes)
        {
            _buffer?.Dispose();
            // Doubling keeps the number of reallocations logarithmic in the longest batch seen.
            _buffer = device.AllocateBuffer(Math.Max(bytes, 2 * (_buffer?.Bytes ?? 0)));
        }
        return _buffer.As<int>();
    }

    public void Dispose() => _buffer?.Dispose();
}
