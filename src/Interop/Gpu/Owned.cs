namespace E3.Interop.Gpu;

/// <summary>Device memory released by <see cref="Dispose"/> (never by a finalizer).</summary>
internal sealed class DeviceBuffer : IDisposable
{
    private readonly IGpuDevice device;
    private readonly GpuStream? freeOn;
    private DevicePtr pointer;

    internal DeviceBuffer(IGpuDevice device, DevicePtr pointer, long bytes, GpuStream? freeOn)
    {
        this.device = device;
        this.pointer = pointer;
        this.freeOn = freeOn;
        Bytes = bytes;
    }

    /// <summary>The allocation's size.</summary>
    public long Bytes { get; }

    /// <summary>The device address.</summary>
    public DevicePtr Pointer => !pointer.IsNull || Bytes == 0 ? pointer : throw new ObjectDisposedException(nameof(DeviceBuffer));

    /// <summary>The address typed as <typeparamref name="T"/> elements.</summary>
    public DevicePointer<T> As<T>() where T : unmanaged => new(Pointer);

    /// <summary>Frees the memory (stream-ordered if it was allocated on a stream).</summary>
    public void Dispose()
    {
        if (pointer.IsNull)
            return;
        var p = pointer;
        pointer = DevicePtr.Null;
        if (freeOn is { } stream)
            device.FreeAsync(p, stream);
        else
            device.Free(p);
    }
}

/// <summary>Page-locked host memory released by <see cref="Dispose"/>.</summary>
internal sealed unsafe class PinnedHostBuffer : IDisposable
{
    private readonly IGpuDevice device;
    private void* pointer;

    internal PinnedHostBuffer(IGpuDevice device, void* pointer, long bytes)
    {
        this.device = device;
        this.pointer = pointer;
        Bytes = bytes;
    }

    /// <summary>The allocation's size.</summary>
    public long Bytes { get; }

    /// <summary>The host address.</summary>
    public void* Pointer => pointer != null ? pointer : throw new ObjectDisposedException(nameof(PinnedHostBuffer));

    /// <summary>The memory as <typeparamref name="T"/> elements (at most int.MaxValue of them).</summary>
    public Span<T> AsSpan<T>() where T : unmanaged => new(Pointer, checked((int)(Bytes / sizeof(T))));

    /// <summary>Frees the memory; the caller must not have copies in flight from or to it.</summary>
    public void Dispose()
    {
        if (pointer == null)
            return;
        var p = pointer;
        pointer = null;
        device.FreePinned(p);
    }
}

/// <summary>A stream destroyed by <see cref="Dispose"/>.</summary>
internal sealed class OwnedStream : IDisposable
{
    private readonly IGpuDevice device;
    private GpuStream? handle;

    internal OwnedStream(IGpuDevice device, GpuStream handle)
    {
        this.device = device;
        this.handle = handle;
    }

    /// <summary>The raw handle for launches and copies.</summary>
    public GpuStream Handle => handle ?? throw new ObjectDisposedException(nameof(OwnedStream));

    /// <summary>Blocks until the stream's work has finished.</summary>
    public void Synchronize() => device.Synchronize(Handle);

    /// <summary>Destroys the stream.</summary>
    public void Dispose()
    {
        if (handle is not { } h)
            return;
        handle = null;
        device.DestroyStream(h);
    }
}

/// <summary>An event destroyed by <see cref="Dispose"/>.</summary>
internal sealed class OwnedEvent : IDisposable
{
    private readonly IGpuDevice device;
    private GpuEvent? handle;

    internal OwnedEvent(IGpuDevice device, GpuEvent handle)
    {
        this.device = device;
        this.handle = handle;
    }

    /// <summary>The raw handle.</summary>
    public GpuEvent Handle => handle ?? throw new ObjectDisposedException(nameof(OwnedEvent));

    /// <summary>Records the event on <paramref name="stream"/>.</summary>
    public void Record(GpuStream stream) => device.Record(Handle, stream);

    /// <summary>Blocks until the recorded point is reached.</summary>
    public void Synchronize() => device.Synchronize(Handle);

    /// <summary>Milliseconds from <paramref name="start"/> to this event (both recorded and complete).</summary>
    public float MillisecondsSince(OwnedEvent start) => device.ElapsedMilliseconds(start.Handle, Handle);

    /// <summary>Destroys the event.</summary>
    public void Dispose()
    {
        if (handle is not { } h)
            return;
        handle = null;
        device.DestroyEvent(h);
    }
}

/// <summary>A loaded kernel module, unloaded by <see cref="Dispose"/>.</summary>
internal sealed class OwnedModule : IDisposable
{
    private readonly IGpuDevice device;
    private GpuModule? handle;

    internal OwnedModule(IGpuDevice device, GpuModule handle, string name)
    {
        this.device = device;
        this.handle = handle;
        Name = name;
    }

    /// <summary>The kernel file it came from.</summary>
    public string Name { get; }

    /// <summary>The raw handle.</summary>
    public GpuModule Handle => handle ?? throw new ObjectDisposedException(nameof(OwnedModule), $"module '{Name}' was unloaded");

    /// <summary>Looks up an entry point; valid until this module is disposed.</summary>
    public GpuFunction GetFunction(string entryPoint) => device.GetFunction(Handle, entryPoint);

    /// <summary>Unloads the module.</summary>
    public void Dispose()
    {
        if (handle is not { } h)
            return;
        handle = null;
        device.UnloadModule(h);
    }
}

/// <summary>Owning factories and span-based copies over <see cref="IGpuDevice"/>.</summary>
internal static class GpuDeviceExtensions
{
    /// <summary>Allocates device memory owned by the returned buffer.</summary>
    public static DeviceBuffer AllocateBuffer(this IGpuDevice device, long bytes) =>
        new(device, bytes == 0 ? DevicePtr.Null : device.Allocate(Positive(bytes)), bytes, null);

    /// <summary>Allocates in stream order; the buffer is also freed in stream order on <paramref name="stream"/>.</summary>
    public static DeviceBuffer AllocateBuffer(this IGpuDevice device, long bytes, GpuStream stream) =>
        new(device, bytes == 0 ? DevicePtr.Null : device.AllocateAsync(Positive(bytes), stream), bytes, stream);

    /// <summary>Allocates pinned host memory owned by the returned buffer.</summary>
    public static unsafe PinnedHostBuffer AllocatePinnedBuffer(this IGpuDevice device, long bytes) =>
        new(device, device.AllocatePinned(Positive(bytes)), bytes);

    /// <summary>Creates a stream owned by the returned object.</summary>
    public static OwnedStream CreateOwnedStream(this IGpuDevice device) => new(device, device.CreateStream());

    /// <summary>Creates an event owned by the returned object.</summary>
    public static OwnedEvent CreateOwnedEvent(this IGpuDevice device, bool timing = true) => new(device, device.CreateEvent(timing));

    /// <summary>Loads a catalog kernel file as a module owned by the returned object.</summary>
    public static OwnedModule LoadOwnedModule(this IGpuDevice device, string kernelFile) => new(device, device.LoadModule(kernelFile), kernelFile);

    /// <summary>Copies pageable host values to the device; <paramref name="source"/> may be reused on return.</summary>
    public static unsafe void CopyToDevice<T>(this IGpuDevice device, DevicePointer<T> destination, ReadOnlySpan<T> source, GpuStream stream)
        where T : unmanaged
    {
        fixed (T* s = source)
            device.CopyToDeviceAsync(destination.Raw, s, (long)source.Length * sizeof(T), stream);
    }

    /// <summary>Copies device values into pageable host memory and waits for <paramref name="stream"/> so the values are there on return.</summary>
    public static unsafe void CopyToHost<T>(this IGpuDevice device, Span<T> destination, DevicePointer<T> source, GpuStream stream)
        where T : unmanaged
    {
        fixed (T* d = destination)
        {
            device.CopyToHostAsync(d, source.Raw, (long)destination.Length * sizeof(T), stream);
            device.Synchronize(stream);
        }
    }

    private static long Positive(long bytes) => bytes > 0 ? bytes : throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "allocation size must be positive");
}
