using E3.Interop.Gpu;

namespace E3.Tests.Cuda;

/// <summary>
/// Base of the test devices that stand where the driver or the emulator would for the typed kernel wrappers:
/// those only load modules, look up functions and launch, so memory, streams, events and GEMMs refuse.
/// </summary>
internal abstract class LaunchOnlyGpuDevice : IGpuDevice
{
    public abstract GpuDeviceInfo Info { get; }
    public abstract GpuModule LoadModule(string kernelFile);
    public abstract void UnloadModule(GpuModule module);
    public abstract GpuFunction GetFunction(GpuModule module, string entryPoint);
    public abstract void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args);

    public virtual void SetMaxDynamicSharedBytes(GpuFunction function, int bytes) => throw Unused();
    public GpuFunctionAttributes GetAttributes(GpuFunction function) => throw Unused();
    public DeviceAllocations Allocations { get; } = new();
    public DevicePtr Allocate(long bytes) => throw Unused();
    public void Free(DevicePtr pointer) => throw Unused();
    public DevicePtr AllocateAsync(long bytes, GpuStream stream) => throw Unused();
    public void FreeAsync(DevicePtr pointer, GpuStream stream) => throw Unused();
    public unsafe void* AllocatePinned(long bytes) => throw Unused();
    public unsafe void FreePinned(void* pointer) => throw Unused();
    public unsafe void CopyToDeviceAsync(DevicePtr destination, void* source, long bytes, GpuStream stream) => throw Unused();
    public unsafe void CopyToHostAsync(void* destination, DevicePtr source, long bytes, GpuStream stream) => throw Unused();
    public void CopyAsync(DevicePtr destination, DevicePtr source, long bytes, GpuStream stream) => throw Unused();
    public void FillBytesAsync(DevicePtr destination, byte value, long count, GpuStream stream) => throw Unused();
    public void FillWordsAsync(DevicePtr destination, uint value, long count, GpuStream stream) => throw Unused();
    public GpuStream CreateStream() => throw Unused();
    public void DestroyStream(GpuStream stream) => throw Unused();
    public void Synchronize(GpuStream stream) => throw Unused();
    public GpuEvent CreateEvent(bool timing) => throw Unused();
    public void DestroyEvent(GpuEvent gpuEvent) => throw Unused();
    public void Record(GpuEvent gpuEvent, GpuStream stream) => throw Unused();
    public void Synchronize(GpuEvent gpuEvent) => throw Unused();
    public float ElapsedMilliseconds(GpuEvent start, GpuEvent end) => throw Unused();
    public void Gemm(in GemmDescriptor gemm, GpuStream stream) => throw Unused();

    public void Dispose()
    {
    }

    private NotSupportedException Unused() => new($"{GetType().Name} only loads modules and launches kernels");
}
