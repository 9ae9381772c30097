namespace E3.Interop.Gpu;

/// <summary>
/// Everything the CUDA backend asks of a GPU, at the level of the driver API, so that the real driver
/// (<see cref="E3.Interop.Driver.CudaDevice"/>) and the CPU emulator (native/libe3emu.so, whose C ABI mirrors
/// these calls) plug in behind the same backend code.
/// <para>
/// Ordering: work queued on one stream runs in order; the handles are raw and unowned here — use the owning
/// wrappers from <see cref="GpuDeviceExtensions"/> (<see cref="DeviceBuffer"/>, <see cref="OwnedStream"/>, ...)
/// which release them through this interface. Host pointers passed to the async copies must stay valid until
/// the stream reaches the copy if they are pinned (<see cref="AllocatePinned"/>); pageable host memory may be
/// reused as soon as the call returns.
/// </para>
/// <para>
/// Threading: a device is used from one thread at a time. <see cref="E3.Interop.Driver.CudaDevice"/> makes its
/// context current on the creating thread and again on each allocation, module and disposal call; per-launch
/// calls do not switch contexts (that would cost a driver call per kernel).
/// </para>
/// </summary>
internal interface IGpuDevice : IDisposable
{
    /// <summary>Name, compute capability, SM count and memory sizes.</summary>
    GpuDeviceInfo Info { get; }

    /// <summary>The device memory allocated through this device and not yet freed, and its peak.</summary>
    DeviceAllocations Allocations { get; }

    /// <summary>Allocates <paramref name="bytes"/> of device memory (256-byte aligned, uninitialised).</summary>
    DevicePtr Allocate(long bytes);

    /// <summary>Frees memory from <see cref="Allocate"/>; waits for nothing.</summary>
    void Free(DevicePtr pointer);

    /// <summary>Allocates in stream order: usable by work queued on <paramref name="stream"/> after this call.</summary>
    DevicePtr AllocateAsync(long bytes, GpuStream stream);

    /// <summary>Frees in stream order, after the work already queued on <paramref name="stream"/>.</summary>
    void FreeAsync(DevicePtr pointer, GpuStream stream);

    /// <summary>Page-locked host memory the device can copy from/to asynchronously.</summary>
    unsafe void* AllocatePinned(long bytes);

    /// <summary>Frees memory from <see cref="AllocatePinned"/>.</summary>
    unsafe void FreePinned(void* pointer);

    /// <summary>Queues a host-to-device copy.</summary>
    unsafe void CopyToDeviceAsync(DevicePtr destination, void* source, long bytes, GpuStream stream);

    /// <summary>Queues a device-to-host copy; read the destination only after synchronising the stream.</summary>
    unsafe void CopyToHostAsync(void* destination, DevicePtr source, long bytes, GpuStream stream);

    /// <summary>Queues a device-to-device copy.</summary>
    void CopyAsync(DevicePtr destination, DevicePtr source, long bytes, GpuStream stream);

    /// <summary>Queues setting <paramref name="count"/> bytes to <paramref name="value"/>.</summary>
    void FillBytesAsync(DevicePtr destination, byte value, long count, GpuStream stream);

    /// <summary>Queues setting <paramref name="count"/> 32-bit words to <paramref name="value"/>.</summary>
    void FillWordsAsync(DevicePtr destination, uint value, long count, GpuStream stream);

    /// <summary>Creates a stream that does not synchronise with the legacy default stream.</summary>
    GpuStream CreateStream();

    /// <summary>Destroys a stream once its queued work completes.</summary>
    void DestroyStream(GpuStream stream);

    /// <summary>Blocks until all work queued on <paramref name="stream"/> has finished.</summary>
    void Synchronize(GpuStream stream);

    /// <summary>Creates an event; <paramref name="timing"/> false makes it cheaper but unusable for timing.</summary>
    GpuEvent CreateEvent(bool timing);

    /// <summary>Destroys an event.</summary>
    void DestroyEvent(GpuEvent gpuEvent);

    /// <summary>Records <paramref name="gpuEvent"/> at the current end of <paramref name="stream"/>.</summary>
    void Record(GpuEvent gpuEvent, GpuStream stream);

    /// <summary>Blocks until the work before the event's last record has finished.</summary>
    void Synchronize(GpuEvent gpuEvent);

    /// <summary>Milliseconds between two recorded, completed timing events.</summary>
    float ElapsedMilliseconds(GpuEvent start, GpuEvent end);

    /// <summary>Loads the kernel file <paramref name="kernelFile"/> of the catalog (e.g. <c>rmsnorm</c>).</summary>
    GpuModule LoadModule(string kernelFile);

    /// <summary>Unloads a module; its functions become invalid.</summary>
    void UnloadModule(GpuModule module);

    /// <summary>Looks up an entry point (e.g. <c>e3_rmsnorm_f32</c>) in a loaded module.</summary>
    GpuFunction GetFunction(GpuModule module, string entryPoint);

    /// <summary>Registers, shared and local memory and the thread limit of a function.</summary>
    GpuFunctionAttributes GetAttributes(GpuFunction function);

    /// <summary>Allows launches of <paramref name="function"/> with up to <paramref name="bytes"/> of dynamic shared memory.</summary>
    void SetMaxDynamicSharedBytes(GpuFunction function, int bytes);

    /// <summary>Queues a kernel launch; <paramref name="args"/> must match the kernel's parameter list.</summary>
    void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args);

    /// <summary>Queues a GEMM with cuBLAS semantics (column-major, fp32 accumulation); see <see cref="GemmDescriptor"/>.</summary>
    void Gemm(in GemmDescriptor gemm, GpuStream stream);
}
