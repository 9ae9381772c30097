using E3.Interop.Gpu;

namespace E3.Tests.Support;

/// <summary>
/// A device that accepts every call and does no work: allocations return fresh fake addresses, copies, launches and
/// GEMMs return at once and are only counted. Running <c>GpuBackend</c> on it times what e3's own host code costs to
/// enqueue a step (argument blocks, launch shapes, GEMM descriptors), without the driver, cuBLAS or the GPU. Downloads
/// leave the host buffer as it was, so results read back are meaningless; only timings and counts are.
/// </summary>
internal sealed class HostOnlyGpuDevice(GpuDeviceInfo info) : IGpuDevice
{
    // 256-byte aligned, as cuMemAlloc's are, and never 0 (the null pointer).
    long _next = 1 << 20;

    public GpuDeviceInfo Info { get; } = info;

    /// <summary>One with an H100's figures: sm_90, 132 SMs, 80 GiB, 50 MiB of L2, 227 KiB of shared memory a block.</summary>
    public static HostOnlyGpuDevice H100() => new(new GpuDeviceInfo(0, "host-only (H100 figures)", 90, 132, 80L << 30, 50 << 20, 232_448));

    /// <summary>Kernel launches since the last <see cref="ResetCounts"/>.</summary>
    public long Launches { get; private set; }

    /// <summary>GEMMs since the last <see cref="ResetCounts"/>.</summary>
    public long Gemms { get; private set; }

    public void ResetCounts() => (Launches, Gemms) = (0, 0);

    /// <summary>
    /// When set, every synchronize, free, stream destruction and module unload throws it, as every driver call does
    /// after a fatal (sticky) CUDA error. Each such call is still counted in <see cref="ReleaseCalls"/>.
    /// </summary>
    public Exception? StickyError { get; set; }

    /// <summary>Synchronize, free, stream-destroy and unload calls so far.</summary>
    public int ReleaseCalls { get; private set; }

    void Release()
    {
        ReleaseCalls++;
        if (StickyError != null) throw StickyError;
    }

    public DeviceAllocations Allocations { get; } = new();

    public DevicePtr Allocate(long bytes)
    {
        long address = _next;
        _next += (Math.Max(bytes, 1) + 255) / 256 * 256;
        Allocations.Allocated(new DevicePtr((ulong)address), bytes);
        return new DevicePtr((ulong)address);
    }

    public void Free(DevicePtr pointer)
    {
        Allocations.Freed(pointer);
        Release();
    }

    public DevicePtr AllocateAsync(long bytes, GpuStream stream) => Allocate(bytes);

    public void FreeAsync(DevicePtr pointer, GpuStream stream) => Allocations.Freed(pointer);

    public unsafe void* AllocatePinned(long bytes) => System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);

    public unsafe void FreePinned(void* pointer) => System.Runtime.InteropServices.NativeMemory.AlignedFree(pointer);

    public unsafe void CopyToDeviceAsync(DevicePtr destination, void* source, long bytes, GpuStream stream)
    {
    }

    public unsafe void CopyToHostAsync(void* destination, DevicePtr source, long bytes, GpuStream stream)
    {
    }

    public void CopyAsync(DevicePtr destination, DevicePtr source, long bytes, GpuStream stream)
    {
    }

    public void FillBytesAsync(DevicePtr destination, byte value, long count, GpuStream stream)
    {
    }

    public void FillWordsAsync(DevicePtr destination, uint value, long count, GpuStream stream)
    {
    }

    public GpuStream CreateStream() => new(1);

    public void DestroyStream(GpuStream stream) => Release();

    public void Synchronize(GpuStream stream) => Release();

    public GpuEvent CreateEvent(bool timing) => new(1);

    public void DestroyEvent(GpuEvent gpuEvent)
    {
    }

    public void Record(GpuEvent gpuEvent, GpuStream stream)
    {
    }

    public void Synchronize(GpuEvent gpuEvent)
    {
    }

    public float ElapsedMilliseconds(GpuEvent start, GpuEvent end) => 0;

    public GpuModule LoadModule(string kernelFile) => new(1);

    public void UnloadModule(GpuModule module) => Release();

    public GpuFunction GetFunction(GpuModule module, string entryPoint) => new(1);

    public GpuFunctionAttributes GetAttributes(GpuFunction function) => new(64, 0, Info.MaxSharedMemoryPerBlockOptIn, 1024, 0);

    public void SetMaxDynamicSharedBytes(GpuFunction function, int bytes)
    {
    }

    public void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args) => Launches++;

    public void Gemm(in GemmDescriptor gemm, GpuStream stream) => Gemms++;

    public void Dispose()
    {
    }
}
