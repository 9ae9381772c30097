namespace E3.Interop.Gpu;

/// <summary>An untyped device address (<c>CUdeviceptr</c>). Zero is the null pointer.</summary>
internal readonly record struct DevicePtr(ulong Address)
{
    /// <summary>The null device pointer.</summary>
    public static DevicePtr Null => default;

    /// <summary>Whether this is the null pointer.</summary>
    public bool IsNull => Address == 0;

    /// <summary>The address <paramref name="bytes"/> further on.</summary>
    public DevicePtr Add(long bytes) => new(unchecked(Address + (ulong)bytes));

    /// <inheritdoc/>
    public override string ToString() => $"0x{Address:x}";
}

/// <summary>A device address of <typeparamref name="T"/> elements; what typed kernel wrappers take.</summary>
internal readonly record struct DevicePointer<T>(ulong Address) where T : unmanaged
{
    /// <summary>Views an untyped pointer as <typeparamref name="T"/> elements.</summary>
    public DevicePointer(DevicePtr pointer) : this(pointer.Address) { }

    /// <summary>The untyped address.</summary>
    public DevicePtr Raw => new(Address);

    /// <summary>Whether this is the null pointer.</summary>
    public bool IsNull => Address == 0;

    /// <summary>The address <paramref name="elements"/> elements further on.</summary>
    public unsafe DevicePointer<T> Offset(long elements) => new(unchecked(Address + (ulong)(elements * sizeof(T))));

    /// <inheritdoc/>
    public override string ToString() => $"({typeof(T).Name}*)0x{Address:x}";
}

/// <summary>A stream handle (<c>CUstream</c>); the default value is the legacy default stream.</summary>
internal readonly record struct GpuStream(nint Handle);

/// <summary>An event handle (<c>CUevent</c>).</summary>
internal readonly record struct GpuEvent(nint Handle);

/// <summary>A loaded module handle (<c>CUmodule</c>).</summary>
internal readonly record struct GpuModule(nint Handle);

/// <summary>A kernel entry point (<c>CUfunction</c>); owned by its module, valid until the module unloads.</summary>
internal readonly record struct GpuFunction(nint Handle);

/// <summary>A grid or block extent.</summary>
internal readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    /// <summary>X * Y * Z.</summary>
    public ulong Count => (ulong)X * Y * Z;
}

/// <summary>Grid, block and dynamic shared memory of one launch.</summary>
internal readonly record struct LaunchShape(Dim3 Grid, Dim3 Block, uint DynamicSharedBytes = 0);

/// <summary>Facts about a device, as the driver reports them.</summary>
/// <param name="Ordinal">Device index.</param>
/// <param name="Name">Marketing name.</param>
/// <param name="ComputeCapability">major * 10 + minor, e.g. 90.</param>
/// <param name="MultiprocessorCount">Number of SMs.</param>
/// <param name="TotalMemoryBytes">Global memory.</param>
/// <param name="L2CacheBytes">L2 cache.</param>
/// <param name="MaxSharedMemoryPerBlockOptIn">Largest dynamic shared memory a kernel may opt into.</param>
internal sealed record GpuDeviceInfo(int Ordinal, string Name, int ComputeCapability, int MultiprocessorCount, long TotalMemoryBytes,
    int L2CacheBytes, int MaxSharedMemoryPerBlockOptIn);

/// <summary>Per-kernel facts from <c>cuFuncGetAttribute</c>.</summary>
internal sealed record GpuFunctionAttributes(int Registers, int StaticSharedBytes, int MaxDynamicSharedBytes, int MaxThreadsPerBlock, int LocalBytes);
