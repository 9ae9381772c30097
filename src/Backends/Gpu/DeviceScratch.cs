using E3.Interop.Gpu;

namespace E3.Backends.Gpu;

/// <summary>
/// A reusable fp32 device buffer, grown (never shrunk) when a call needs more. Reuse between calls is safe because
/// every launch that reads or writes it is queued on one stream, in order.
/// </summary>
internal sealed class DeviceScratch(IGpuDevice device, GpuStream stream) : IDisposable
{
    DeviceBuffer? _buffer;

    /// <summary>At least <paramref name="count"/> floats (contents undefined).</summary>
    public DevicePointer<float> Floats(long count)
    {
        long bytes = Math.Max(1, count) * sizeof(float);
        if (_buffer is null || _buffer.Bytes < bytes)
        {
            if (_buffer != null)
            {
                device.Synchronize(stream); // queued launches may still use the old buffer
                _buffer.Dispose();
            }
            _buffer = device.AllocateBuffer(bytes);
        }
        return _buffer.As<float>();
    }

    public void Dispose() => _buffer?.Dispose();
}
