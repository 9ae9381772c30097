using System.Runtime.InteropServices;
using E3.Interop.Gpu;

namespace E3.Interop.Emulator;

/// <summary>
/// The CPU emulator (libe3emu.so) behind <see cref="IGpuDevice"/>, so that the typed kernel families and the GPU
/// backend run unchanged on device "emu". Device memory and pinned memory are host memory; every operation runs
/// synchronously at submission, so streams and events are trivially in order. Modules are the kernel files
/// compiled into the library (module name = <c>.cu</c> stem), and launches take the very parameter block the
/// real driver gets (<see cref="KernelArgs.WritePointers"/>): the emulator's trampolines read each parameter
/// through its slot pointer at the kernel's own parameter type, exactly as <c>cuLaunchKernel</c> does.
/// </summary>
public sealed unsafe class EmuGpuDevice : IGpuDevice
{
    /// <summary>CUDA's dynamic shared memory limit for a kernel that has not opted into more.</summary>
    public const int DefaultDynamicSharedBytes = 48 * 1024;

    /// <summary>The emulator's largest opt-in shared memory per block (that of compute capability 9.0).</summary>
    public const int MaxSharedBytesOptIn = 227 * 1024;

    /// <summary>The emulator's thread limit per block (CUDA's).</summary>
    public const int MaxThreadsPerBlock = 1024;

    // Per function: parameter count (to check every launch) and the opted-in dynamic shared memory limit.
    private readonly Dictionary<nint, FunctionState> functions = new();
    private bool disposed;

    private EmuGpuDevice(string libraryPath)
    {
        LibraryPath = libraryPath;
        int workers = EmuNative.WorkerCount();
        Info = new GpuDeviceInfo(0, $"E3 CUDA emulator ({workers} CPU workers)", ComputeCapability: 0, MultiprocessorCount: workers,
            TotalMemoryBytes: GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, L2CacheBytes: 0, MaxSharedMemoryPerBlockOptIn: MaxSharedBytesOptIn);
    }

    /// <summary>
    /// Loads the emulator library (<c>E3_EMU_LIB</c> overrides <paramref name="libraryFileName"/>, see <see cref="EmuLibrary"/>)
    /// and initialises it. ComputeCapability is reported as 0: the emulator never defines <c>__CUDA_ARCH__</c> and runs
    /// the kernels' portable paths.
    /// </summary>
    /// <exception cref="EmuLibraryNotFoundException">No library where <see cref="EmuLibrary"/> looks; the message lists the paths searched.</exception>
    public static EmuGpuDevice Open(string libraryFileName = EmuLibrary.ProductFileName)
    {
        var path = EmuLibrary.Load(libraryFileName);
        EmuNative.Check(EmuNative.Init(0));
        return new EmuGpuDevice(path);
    }

    /// <summary>The library file in use.</summary>
    public string LibraryPath { get; }

    /// <inheritdoc/>
    public GpuDeviceInfo Info { get; }

    /// <inheritdoc/>
    public DeviceAllocations Allocations { get; } = new();

    /// <inheritdoc/>
    public DevicePtr Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        EmuNative.Check(EmuNative.MemAlloc(out var pointer, (nuint)bytes), $"e3emu_mem_alloc({bytes} bytes)");
        Allocations.Allocated(new DevicePtr(pointer), bytes);
        return new DevicePtr(pointer);
    }

    /// <inheritdoc/>
    public void Free(DevicePtr pointer)
    {
        EmuNative.Check(EmuNative.MemFree(pointer.Address), $"e3emu_mem_free({pointer})");
        Allocations.Freed(pointer);
    }

    /// <summary>Work is synchronous, so stream order is program order: a plain allocation.</summary>
    public DevicePtr AllocateAsync(long bytes, GpuStream stream) => Allocate(bytes);

    /// <summary>Everything queued before has already run: a plain free.</summary>
    public void FreeAsync(DevicePtr pointer, GpuStream stream) => Free(pointer);

    /// <summary>Plain host memory: every copy is synchronous, so nothing needs page locking.</summary>
    public void* AllocatePinned(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        return NativeMemory.AlignedAlloc((nuint)bytes, 64);
    }

    /// <inheritdoc/>
    public void FreePinned(void* pointer) => NativeMemory.AlignedFree(pointer);

    /// <inheritdoc/>
    public void CopyToDeviceAsync(DevicePtr destination, void* source, long bytes, GpuStream stream)
    {
        if (bytes != 0)
            EmuNative.Check(EmuNative.MemcpyHtoD(destination.Address, source, Size(bytes)), $"e3emu_memcpy_htod({destination}, {bytes} bytes)");
    }

    /// <inheritdoc/>
    public void CopyToHostAsync(void* destination, DevicePtr source, long bytes, GpuStream stream)
    {
        if (bytes != 0)
            EmuNative.Check(EmuNative.MemcpyDtoH(destination, source.Address, Size(bytes)), $"e3emu_memcpy_dtoh({source}, {bytes} bytes)");
    }

    /// <inheritdoc/>
    public void CopyAsync(DevicePtr destination, DevicePtr source, long bytes, GpuStream stream)
    {
        if (bytes != 0)
            EmuNative.Check(EmuNative.MemcpyDtoD(destination.Address, source.Address, Size(bytes)), $"e3emu_memcpy_dtod({destination}, {source}, {bytes} bytes)");
    }

    /// <inheritdoc/>
    public void FillBytesAsync(DevicePtr destination, byte value, long count, GpuStream stream)
    {
        if (count != 0)
            EmuNative.Check(EmuNative.MemsetD8(destination.Address, value, Size(count)), $"e3emu_memset_d8({destination}, {count} bytes)");
    }

    /// <inheritdoc/>
    public void FillWordsAsync(DevicePtr destination, uint value, long count, GpuStream stream)
    {
        if (count != 0)
            EmuNative.Check(EmuNative.MemsetD32(destination.Address, value, Size(count)), $"e3emu_memset_d32({destination}, {count} words)");
    }

    /// <inheritdoc/>
    public GpuStream CreateStream()
    {
        EmuNative.Check(EmuNative.StreamCreate(out var handle));
        return new GpuStream(handle);
    }

    /// <inheritdoc/>
    public void DestroyStream(GpuStream stream) => EmuNative.Check(EmuNative.StreamDestroy(stream.Handle));

    /// <inheritdoc/>
    public void Synchronize(GpuStream stream) => EmuNative.Check(EmuNative.StreamSynchronize(stream.Handle));

    /// <summary>Every emulator event records wall-clock time, so <paramref name="timing"/> changes nothing.</summary>
    public GpuEvent CreateEvent(bool timing)
    {
        EmuNative.Check(EmuNative.EventCreate(out var handle));
        return new GpuEvent(handle);
    }

    /// <inheritdoc/>
    public void DestroyEvent(GpuEvent gpuEvent) => EmuNative.Check(EmuNative.EventDestroy(gpuEvent.Handle));

    /// <inheritdoc/>
    public void Record(GpuEvent gpuEvent, GpuStream stream) => EmuNative.Check(EmuNative.EventRecord(gpuEvent.Handle, stream.Handle));

    /// <inheritdoc/>
    public void Synchronize(GpuEvent gpuEvent) => EmuNative.Check(EmuNative.EventSynchronize(gpuEvent.Handle));

    /// <inheritdoc/>
    public float ElapsedMilliseconds(GpuEvent start, GpuEvent end)
    {
        EmuNative.Check(EmuNative.EventElapsedTime(out var milliseconds, start.Handle, end.Handle));
        return milliseconds;
    }

    /// <summary>Finds the module compiled in from <c>kernels/<paramref name="kernelFile"/>.cu</c>.</summary>
    public GpuModule LoadModule(string kernelFile)
    {
        EmuNative.Check(EmuNative.ModuleLoad(out var module, kernelFile), $"e3emu_module_load({kernelFile})");
        return new GpuModule(module);
    }

    /// <inheritdoc/>
    public void UnloadModule(GpuModule module) => EmuNative.Check(EmuNative.ModuleUnload(module.Handle));

    /// <inheritdoc/>
    public GpuFunction GetFunction(GpuModule module, string entryPoint)
    {
        EmuNative.Check(EmuNative.ModuleGetFunction(out var function, module.Handle, entryPoint), $"e3emu_module_get_function({entryPoint})");
        EmuNative.Check(EmuNative.FunctionParamCount(function, out var count));
        lock (functions)
        {
            if (!functions.ContainsKey(function))
                functions[function] = new FunctionState(entryPoint, count, DefaultDynamicSharedBytes);
        }
        return new GpuFunction(function);
    }

    /// <summary>
    /// What the emulator knows: the thread limit and the opted-in dynamic shared memory. Registers, static shared and
    /// local memory do not exist as such on the CPU and are reported as 0.
    /// </summary>
    public GpuFunctionAttributes GetAttributes(GpuFunction function) =>
        new(Registers: 0, StaticSharedBytes: 0, MaxDynamicSharedBytes: State(function).MaxDynamicSharedBytes, MaxThreadsPerBlock: MaxThreadsPerBlock, LocalBytes: 0);

    /// <summary>Raises the function's dynamic shared memory limit, up to <see cref="MaxSharedBytesOptIn"/> as on the GPU.</summary>
    public void SetMaxDynamicSharedBytes(GpuFunction function, int bytes)
    {
        var state = State(function);
        if (bytes < 0 || bytes > MaxSharedBytesOptIn)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"{state.Name}: dynamic shared memory must be within 0..{MaxSharedBytesOptIn} bytes");
        lock (functions)
            functions[function.Handle] = state with { MaxDynamicSharedBytes = bytes };
    }

    /// <summary>
    /// Runs the whole grid before returning. Checks, as the driver would fail the launch, that the argument count
    /// matches the kernel's parameter list and that dynamic shared memory stays within the opted-in limit.
    /// </summary>
    public void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args)
    {
        var state = State(function);
        if (args.Count != state.ParameterCount)
            throw new ArgumentException($"kernel {state.Name} takes {state.ParameterCount} parameters, {args.Count} given", nameof(args));
        if (shape.DynamicSharedBytes > state.MaxDynamicSharedBytes)
            throw new ArgumentException(
                $"kernel {state.Name}: {shape.DynamicSharedBytes} bytes of dynamic shared memory exceed its limit of {state.MaxDynamicSharedBytes} (raise it with SetMaxDynamicSharedBytes)",
                nameof(shape));
        nint* block = stackalloc nint[Math.Max(1, args.Count)];
        args.WritePointers(new Span<nint>(block, args.Count));
        EmuNative.Check(EmuNative.Launch(function.Handle, shape.Grid.X, shape.Grid.Y, shape.Grid.Z, shape.Block.X, shape.Block.Y, shape.Block.Z,
            shape.DynamicSharedBytes, stream.Handle, (void**)block), $"launch of {state.Name}");
    }

    /// <summary>cublasGemmEx / cublasGemmStridedBatchedEx semantics (column-major, fp32 accumulation, TF32 operands when asked) on the CPU.</summary>
    public void Gemm(in GemmDescriptor gemm, GpuStream stream)
    {
        gemm.Validate();
        if (gemm.M == 0 || gemm.N == 0)
            return;
        void* a = (void*)gemm.A.Pointer.Address, b = (void*)gemm.B.Pointer.Address, c = (void*)gemm.C.Pointer.Address;
        var transA = (EmuOperation)gemm.TransA;
        var transB = (EmuOperation)gemm.TransB;
        if (gemm.BatchCount == 1)
            EmuNative.Check(EmuNative.GemmEx(transA, transB, gemm.M, gemm.N, gemm.K, gemm.Alpha, a, (EmuDataType)gemm.A.Type, gemm.A.LeadingDimension,
                b, (EmuDataType)gemm.B.Type, gemm.B.LeadingDimension, gemm.Beta, c, (EmuDataType)gemm.C.Type, gemm.C.LeadingDimension, (int)gemm.Compute),
                $"e3emu_gemm_ex(m={gemm.M}, n={gemm.N}, k={gemm.K})");
        else
            EmuNative.Check(EmuNative.GemmStridedBatchedEx(transA, transB, gemm.M, gemm.N, gemm.K, gemm.Alpha,
                a, (EmuDataType)gemm.A.Type, gemm.A.LeadingDimension, gemm.A.BatchStride,
                b, (EmuDataType)gemm.B.Type, gemm.B.LeadingDimension, gemm.B.BatchStride, gemm.Beta,
                c, (EmuDataType)gemm.C.Type, gemm.C.LeadingDimension, gemm.C.BatchStride, gemm.BatchCount, (int)gemm.Compute),
                $"e3emu_gemm_strided_batched_ex(m={gemm.M}, n={gemm.N}, k={gemm.K}, batch={gemm.BatchCount})");
    }

    /// <summary>The emulator runtime lives for the process (its workers are never joined); this only marks the device closed.</summary>
    public void Dispose() => disposed = true;

    private FunctionState State(GpuFunction function)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        lock (functions)
            return functions.TryGetValue(function.Handle, out var state)
                ? state
                : throw new ArgumentException($"function handle 0x{function.Handle:x} was not obtained from this device's GetFunction", nameof(function));
    }

    private static nuint Size(long bytes) => bytes > 0 ? (nuint)bytes : throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "must not be negative");

    private readonly record struct FunctionState(string Name, int ParameterCount, int MaxDynamicSharedBytes);
}
