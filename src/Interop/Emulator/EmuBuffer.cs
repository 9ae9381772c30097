namespace E3.Interop.Emulator;

/// <summary>A device allocation of the emulator; freed by <see cref="Dispose"/>.</summary>
internal sealed unsafe class EmuBuffer : IDisposable
{
    internal EmuBuffer(ulong devicePointer, long bytes)
    {
        DevicePointer = devicePointer;
        Bytes = bytes;
    }

    /// <summary>The CUdeviceptr-style address (host memory under the emulator).</summary>
    public ulong DevicePointer { get; private set; }

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }

    /// <summary>Copies <paramref name="source"/> to the start of the buffer.</summary>
    public void Upload<T>(ReadOnlySpan<T> source) where T : unmanaged
    {
        var bytes = CheckedLength<T>(source.Length);
        fixed (T* p = source) EmuNative.Check(EmuNative.MemcpyHtoD(Live(), p, bytes));
    }

    /// <summary>Copies the start of the buffer into <paramref name="destination"/>.</summary>
    public void Download<T>(Span<T> destination) where T : unmanaged
    {
        var bytes = CheckedLength<T>(destination.Length);
        fixed (T* p = destination) EmuNative.Check(EmuNative.MemcpyDtoH(p, Live(), bytes));
    }

    /// <summary>The first <paramref name="count"/> elements as a new array.</summary>
    public T[] Download<T>(int count) where T : unmanaged
    {
        var result = new T[count];
        Download<T>(result);
        return result;
    }

    /// <summary>Sets every byte to <paramref name="value"/>.</summary>
    public void Fill(byte value) => EmuNative.Check(EmuNative.MemsetD8(Live(), value, (nuint)Bytes));

    public void Dispose()
    {
        if (DevicePointer == 0) return;
        var pointer = DevicePointer;
        DevicePointer = 0;
        EmuNative.Check(EmuNative.MemFree(pointer));
    }

    private ulong Live() => DevicePointer != 0 ? DevicePointer : throw new ObjectDisposedException(nameof(EmuBuffer));

    private nuint CheckedLength<T>(int count) where T : unmanaged
    {
        var bytes = (long)count * sizeof(T);
        if (bytes > Bytes)
            throw new ArgumentOutOfRangeException(nameof(count), $"{bytes} bytes do not fit a buffer of {Bytes} bytes");
        return (nuint)bytes;
    }
}
