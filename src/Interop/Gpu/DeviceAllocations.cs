namespace E3.Interop.Gpu;

/// <summary>
/// The device memory e3 holds through one <see cref="IGpuDevice"/>: bytes allocated and not yet freed, and the most at
/// once since the last <see cref="ResetPeak"/>. It counts what the engine asks for (weights, activations, scratch), not
/// what the driver or cuBLAS take for themselves (context, modules, workspace), so that a benchmark can set it beside
/// the memory plan, which counts the same.
/// </summary>
internal sealed class DeviceAllocations
{
    readonly Dictionary<ulong, long> _sizes = new();
    readonly Lock _lock = new();
    long _live, _peak;

    /// <summary>Bytes allocated and not yet freed.</summary>
    public long LiveBytes
    {
        get { lock (_lock) return _live; }
    }

    /// <summary>The most <see cref="LiveBytes"/> reached since the device opened or the last <see cref="ResetPeak"/>.</summary>
    public long PeakBytes
    {
        get { lock (_lock) return _peak; }
    }

    /// <summary>Starts a new peak from what is live now.</summary>
    public void ResetPeak()
    {
        lock (_lock) _peak = _live;
    }

    /// <summary>For a device: <paramref name="bytes"/> were allocated at <paramref name="pointer"/>.</summary>
    public void Allocated(DevicePtr pointer, long bytes)
    {
        lock (_lock)
        {
            _sizes[pointer.Address] = bytes;
            _live += bytes;
            _peak = Math.Max(_peak, _live);
        }
    }

    /// <summary>For a device: the allocation at <paramref name="pointer"/> was freed (one it never counted is ignored).</summary>
    public void Freed(DevicePtr pointer)
    {
        lock (_lock)
            if (_sizes.Remove(pointer.Address, out long bytes)) _live -= bytes;
    }
}
