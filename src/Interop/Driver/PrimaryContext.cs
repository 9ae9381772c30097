namespace E3.Interop.Driver;

/// <summary>
/// A retained reference to a device's primary context (the one the runtime API and cuBLAS share), released
/// on dispose. E3 never creates its own contexts: libraries that use the runtime API would not see them.
/// </summary>
internal sealed unsafe class PrimaryContext : IDisposable
{
    private nint context;

    /// <summary>Retains device <paramref name="device"/>'s primary context (a CUdevice from cuDeviceGet).</summary>
    internal PrimaryContext(int device)
    {
        nint retained;
        CudaException.Check(DriverApi.cuDevicePrimaryCtxRetain(&retained, device), "cuDevicePrimaryCtxRetain");
        context = retained;
        Device = device;
    }

    /// <summary>The CUdevice it belongs to.</summary>
    public int Device { get; }

    /// <summary>Makes the context current on the calling thread.</summary>
    public void MakeCurrent() =>
        CudaException.Check(DriverApi.cuCtxSetCurrent(context != 0 ? context : throw new ObjectDisposedException(nameof(PrimaryContext))), "cuCtxSetCurrent");

    /// <summary>Releases the retain; the driver destroys the context when the last retain goes.</summary>
    public void Dispose()
    {
        if (context == 0)
            return;
        context = 0;
        CudaException.Check(DriverApi.cuDevicePrimaryCtxRelease(Device), "cuDevicePrimaryCtxRelease");
    }
}
