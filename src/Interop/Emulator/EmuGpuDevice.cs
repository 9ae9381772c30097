using System.Runtime.InteropServices;
using E3.Interop.Gpu;

namespace E3.Interop.Emulator;

/// <summary>
/// The CPU emulator (libe3emu.so) behind <see cref="IGpuDevice"/>, so that the typed kernel families and the GPU
/// backend run unchanged on device "emu". Device memory and pinned memory are host memory. By default the work
/// queued on a stream runs only when the host waits for it (<see cref="EmuExecution.Deferred"/>), with the driver's
/// rules for what waits: a copy into pageable host memory returns once done, a copy from pageable memory takes its
/// source at the call, copies to and from pinned memory run in stream order, and a plain free or a destroyed stream
/// finishes the work before it. <see cref="EmuExecution.Immediate"/> (<c>E3_EMU_EXECUTION=immediate</c>) runs each
/// operation at submission instead. Modules are the kernel files
/// compiled into the library (module name = <c>.cu</c> stem), and launches take the very parameter block the
/// real driver gets (<see cref="KernelArgs.WritePointers"/>): the emulator's trampolines read each parameter
/// through its slot pointer at the kernel's own parameter type, exactly as <c>cuLaunchKernel</c> does.
/// </summary>
internal sealed unsafe class EmuGpuDevice : IGpuDevice
{
    /// <summary>CUDA's dynamic shared memory limit for a kernel that has not opted into more.</summary>
    public const int DefaultDynamicSharedBytes = 48 * 1024;

    /// <summary>The emulator's largest opt-in shared memory per block (that of compute capability 9.0).</summary>
    public const int MaxSharedBytesOptIn = 227 * 1024;

    /// <summary>The emulator's thread limit per block (CUDA's).</summary>
    public const int MaxThreadsPerBlock = 1024;

    /// <summary>The environment variable that picks the execution mode (<c>deferred</c>, the default, or <c>immediate</c>).</summary>
    public const string ExecutionVariable = "E3_EMU_EXECUTION";

    // Per function: parameter count (to check every launch) and the opted-in dynamic shared memory limit.
    private readonly Dictionary<nint, FunctionState> functions = new();
    private readonly Dictionary<nint, string> moduleFiles = new();
    private readonly DeferredStreams? deferred;
    // Pinned allocations (address, bytes): copies to and from them run in stream order, unlike pageable memory's.
    private readonly Dictionary<nuint, long> pinned = new();
    // Threads on which the real device's context would be current: CudaDevice makes it current on the opening thread
    // and in every allocation, stream, event and module call, but not in launches, GEMMs, copies or waits.
    private readonly HashSet<int> currentThreads = [];
    private bool disposed;

    private EmuGpuDevice(string libraryPath, EmuExecution execution)
    {
        LibraryPath = libraryPath;
        Execution = execution;
        deferred = execution == EmuExecution.Deferred ? new DeferredStreams() : null;
        LaunchLimits = LaunchLimitCheck.FromEnvironment();
        MakeCurrent();
        int workers = EmuNative.WorkerCount();
        Info = new GpuDeviceInfo(0, $"E3 CUDA emulator ({workers} CPU workers)", ComputeCapability: 0, MultiprocessorCount: workers,
            TotalMemoryBytes: GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, L2CacheBytes: 0, MaxSharedMemoryPerBlockOptIn: MaxSharedBytesOptIn);
    }

    /// <summary>
    /// Loads the emulator library (<c>E3_EMU_LIB</c> overrides <paramref name="libraryFileName"/>, see <see cref="EmuLibrary"/>)
    /// and initialises it. ComputeCapability is reported as 0: the emulator never defines <c>__CUDA_ARCH__</c> and runs
    /// the kernels' portable paths.
    /// </summary>
    /// <param name="libraryFileName">The library to load.</param>
    /// <param name="execution">When queued work runs; null takes <see cref="ExecutionVariable"/>, else deferred.</param>
    /// <exception cref="EmuLibraryNotFoundException">No library where <see cref="EmuLibrary"/> looks; the message lists the paths searched.</exception>
    public static EmuGpuDevice Open(string libraryFileName = EmuLibrary.ProductFileName, EmuExecution? execution = null)
    {
        var mode = execution ?? ExecutionFromEnvironment();
        var path = EmuLibrary.Load(libraryFileName);
        EmuNative.Check(EmuNative.Init(0));
        return new EmuGpuDevice(path, mode);
    }

    /// <summary>The mode <see cref="ExecutionVariable"/> names; deferred when it is unset.</summary>
    /// <exception cref="ArgumentException">The variable holds something else.</exception>
    public static EmuExecution ExecutionFromEnvironment() => ParseExecution(Environment.GetEnvironmentVariable(ExecutionVariable));

    /// <summary>The mode a value of <see cref="ExecutionVariable"/> names (case-insensitive); deferred for null or empty.</summary>
    /// <exception cref="ArgumentException"><paramref name="value"/> names no mode.</exception>
    public static EmuExecution ParseExecution(string? value) => value switch
    {
        null or "" => EmuExecution.Deferred,
        _ when value.Equals("deferred", StringComparison.OrdinalIgnoreCase) => EmuExecution.Deferred,
        _ when value.Equals("immediate", StringComparison.OrdinalIgnoreCase) => EmuExecution.Immediate,
        _ => throw new ArgumentException($"{ExecutionVariable}={value}: expected deferred or immediate"),
    };

    /// <summary>The library file in use.</summary>
    public string LibraryPath { get; }

    /// <summary>When the work queued on streams runs.</summary>
    public EmuExecution Execution { get; }

    /// <summary>The order in which each block's threads run (<c>E3EMU_THREAD_ORDER</c>, read when the library starts).</summary>
    public EmuThreadOrder ThreadOrder => EmuNative.ThreadOrderInUse();

    /// <summary>
    /// The real GPUs whose launch limits every launch of a catalog kernel must also meet (registers per block, threads,
    /// shared memory), or null for none: <see cref="LaunchLimitCheck.TargetsVariable"/> sets it at
    /// <see cref="Open"/> (by default sm_80 and sm_90 when NVRTC is there).
    /// </summary>
    public LaunchLimitCheck? LaunchLimits { get; set; }

    /// <summary>Operations queued on some stream and not yet run (always 0 in immediate mode).</summary>
    public int PendingOperations => deferred?.PendingCount ?? 0;

    /// <inheritdoc/>
    public GpuDeviceInfo Info { get; }

    /// <inheritdoc/>
    public DeviceAllocations Allocations { get; } = new();

    /// <inheritdoc/>
    public DevicePtr Allocate(long bytes)
    {
        MakeCurrent();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        EmuNative.Check(EmuNative.MemAlloc(out var pointer, (nuint)bytes), $"e3emu_mem_alloc({bytes} bytes)");
        Allocations.Allocated(new DevicePtr(pointer), bytes);
        return new DevicePtr(pointer);
    }

    /// <summary>
    /// Like <c>cuMemFree</c> on memory from <c>cuMemAlloc</c>, which synchronises: queued work on every stream runs first.
    /// </summary>
    public void Free(DevicePtr pointer)
    {
        MakeCurrent();
        deferred?.DrainAll();
        FreeNow(pointer);
    }

    private void FreeNow(DevicePtr pointer)
    {
        MemFree(pointer);
        Allocations.Freed(pointer);
    }

    private static void MemFree(DevicePtr pointer) => EmuNative.Check(EmuNative.MemFree(pointer.Address), $"e3emu_mem_free({pointer})");

    /// <summary>The memory exists at once; the emulator's allocations are not pooled, so stream order changes nothing.</summary>
    public DevicePtr AllocateAsync(long bytes, GpuStream stream) => Allocate(bytes);

    /// <summary>Frees when the stream reaches the call: work queued before it may still use the memory.</summary>
    public void FreeAsync(DevicePtr pointer, GpuStream stream)
    {
        MakeCurrent();
        // After a failure nothing queued will run: free now, and without throwing, so that releasing can go on.
        if (deferred is null || deferred.StickyError is not null)
        {
            FreeNow(pointer);
            return;
        }
        ObjectDisposedException.ThrowIf(disposed, this);
        Allocations.Freed(pointer);
        deferred.Submit(stream.Handle, $"e3emu_mem_free({pointer}) in stream order", () => MemFree(pointer));
    }

    /// <summary>Host memory that the copies treat as page-locked: they read and write it in stream order.</summary>
    public void* AllocatePinned(long bytes)
    {
        MakeCurrent();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        var pointer = NativeMemory.AlignedAlloc((nuint)bytes, 64);
        lock (pinned)
            pinned.Add((nuint)pointer, bytes);
        return pointer;
    }

    /// <summary>Like <c>cuMemFreeHost</c>, which synchronises: queued work runs first.</summary>
    public void FreePinned(void* pointer)
    {
        MakeCurrent();
        deferred?.DrainAll();
        lock (pinned)
            pinned.Remove((nuint)pointer);
        NativeMemory.AlignedFree(pointer);
    }

    /// <summary>
    /// From pinned memory the copy reads its source when the stream reaches it; from pageable memory the source is
    /// taken at the call (the driver stages it), so the caller may reuse it on return.
    /// </summary>
    public void CopyToDeviceAsync(DevicePtr destination, void* source, long bytes, GpuStream stream)
    {
        RequireCurrent("cuMemcpyHtoDAsync");
        if (bytes == 0)
            return;
        var what = $"e3emu_memcpy_htod({destination}, {bytes} bytes)";
        CheckRange(destination, bytes, what);
        if (deferred is null || IsPinned(source, bytes))
        {
            var from = (nint)source;
            Submit(stream, what, _ => EmuNative.Check(EmuNative.MemcpyHtoD(destination.Address, (void*)from, Size(bytes)), what));
            return;
        }
        if (bytes > DeferredStreams.MaxPendingSnapshotBytes)
        {
            // Too large to hold a second copy of: run the stream up to here and copy now, which a GPU may do as well.
            deferred.Drain(stream.Handle);
            EmuNative.Check(EmuNative.MemcpyHtoD(destination.Address, source, Size(bytes)), what);
            return;
        }
        var snapshot = new ReadOnlySpan<byte>(source, (int)bytes).ToArray();
        Submit(stream, what, _ =>
        {
            fixed (byte* s = snapshot)
                EmuNative.Check(EmuNative.MemcpyHtoD(destination.Address, s, Size(bytes)), what);
        }, snapshotBytes: bytes);
    }

    /// <summary>
    /// Into pinned memory the copy lands when the stream reaches it. Into pageable memory the call returns once the
    /// copy is done, after the stream's earlier work: what the driver does (its documentation once promised it and now
    /// says only that such a copy "might be synchronous"). Every copy of e3's into pageable memory waits for its stream
    /// right after, so it relies on neither.
    /// </summary>
    public void CopyToHostAsync(void* destination, DevicePtr source, long bytes, GpuStream stream)
    {
        RequireCurrent("cuMemcpyDtoHAsync");
        if (bytes == 0)
            return;
        var what = $"e3emu_memcpy_dtoh({source}, {bytes} bytes)";
        CheckRange(source, bytes, what);
        if (deferred is not null && IsPinned(destination, bytes))
        {
            var to = (nint)destination;
            Submit(stream, what, _ => EmuNative.Check(EmuNative.MemcpyDtoH((void*)to, source.Address, Size(bytes)), what));
            return;
        }
        deferred?.Drain(stream.Handle);
        EmuNative.Check(EmuNative.MemcpyDtoH(destination, source.Address, Size(bytes)), what);
    }

    /// <inheritdoc/>
    public void CopyAsync(DevicePtr destination, DevicePtr source, long bytes, GpuStream stream)
    {
        RequireCurrent("cuMemcpyDtoDAsync");
        if (bytes == 0)
            return;
        var what = $"e3emu_memcpy_dtod({destination}, {source}, {bytes} bytes)";
        CheckRange(destination, bytes, what);
        CheckRange(source, bytes, what);
        Submit(stream, what, _ => EmuNative.Check(EmuNative.MemcpyDtoD(destination.Address, source.Address, Size(bytes)), what));
    }

    /// <inheritdoc/>
    public void FillBytesAsync(DevicePtr destination, byte value, long count, GpuStream stream)
    {
        RequireCurrent("cuMemsetD8Async");
        if (count == 0)
            return;
        var what = $"e3emu_memset_d8({destination}, {count} bytes)";
        CheckRange(destination, count, what);
        Submit(stream, what, _ => EmuNative.Check(EmuNative.MemsetD8(destination.Address, value, Size(count)), what));
    }

    /// <inheritdoc/>
    public void FillWordsAsync(DevicePtr destination, uint value, long count, GpuStream stream)
    {
        RequireCurrent("cuMemsetD32Async");
        if (count == 0)
            return;
        var what = $"e3emu_memset_d32({destination}, {count} words)";
        CheckRange(destination, checked(count * sizeof(uint)), what);
        Submit(stream, what, _ => EmuNative.Check(EmuNative.MemsetD32(destination.Address, value, Size(count)), what));
    }

    /// <inheritdoc/>
    public GpuStream CreateStream()
    {
        MakeCurrent();
        EmuNative.Check(EmuNative.StreamCreate(out var handle));
        return new GpuStream(handle);
    }

    /// <summary>The stream's queued work still runs, as the driver finishes it after <c>cuStreamDestroy</c>.</summary>
    public void DestroyStream(GpuStream stream)
    {
        MakeCurrent();
        try
        {
            deferred?.Remove(stream.Handle);
        }
        finally
        {
            EmuNative.Check(EmuNative.StreamDestroy(stream.Handle));
        }
    }

    /// <summary>Runs the work queued on <paramref name="stream"/>; a failure in it is reported here, as CUDA reports it.</summary>
    public void Synchronize(GpuStream stream)
    {
        deferred?.Drain(stream.Handle);
        EmuNative.Check(EmuNative.StreamSynchronize(stream.Handle));
    }

    /// <summary>Every emulator event records wall-clock time, so <paramref name="timing"/> changes nothing.</summary>
    public GpuEvent CreateEvent(bool timing)
    {
        MakeCurrent();
        EmuNative.Check(EmuNative.EventCreate(out var handle));
        return new GpuEvent(handle);
    }

    /// <inheritdoc/>
    public void DestroyEvent(GpuEvent gpuEvent)
    {
        MakeCurrent();
        deferred?.RemoveEvent(gpuEvent.Handle);
        EmuNative.Check(EmuNative.EventDestroy(gpuEvent.Handle));
    }

    /// <summary>The event takes its time when the stream reaches the record.</summary>
    public void Record(GpuEvent gpuEvent, GpuStream stream)
    {
        RequireCurrent("cuEventRecord");
        if (deferred is null)
            EmuNative.Check(EmuNative.EventRecord(gpuEvent.Handle, stream.Handle));
        else
            deferred.Record(gpuEvent.Handle, stream.Handle, () => EmuNative.Check(EmuNative.EventRecord(gpuEvent.Handle, stream.Handle)));
    }

    /// <summary>Runs the event's stream up to its record.</summary>
    public void Synchronize(GpuEvent gpuEvent)
    {
        deferred?.Synchronize(gpuEvent.Handle);
        EmuNative.Check(EmuNative.EventSynchronize(gpuEvent.Handle));
    }

    /// <summary>
    /// As <c>cuEventElapsedTime</c>: fails with CUDA_ERROR_NOT_READY while either record is still queued, so a
    /// timing that forgot to wait for its end event fails here as on a GPU.
    /// </summary>
    public float ElapsedMilliseconds(GpuEvent start, GpuEvent end)
    {
        deferred?.ThrowIfFailed();
        if (deferred is not null && (!deferred.IsComplete(start.Handle) || !deferred.IsComplete(end.Handle)))
            throw new EmuException(EmuResult.NotReady, EmuNative.ErrorName(EmuResult.NotReady), "cuEventElapsedTime",
                "an event's record is still queued on its stream; synchronise on the end event first");
        EmuNative.Check(EmuNative.EventElapsedTime(out var milliseconds, start.Handle, end.Handle));
        return milliseconds;
    }

    /// <summary>Finds the module compiled in from <c>kernels/<paramref name="kernelFile"/>.cu</c>.</summary>
    public GpuModule LoadModule(string kernelFile)
    {
        MakeCurrent();
        EmuNative.Check(EmuNative.ModuleLoad(out var module, kernelFile), $"e3emu_module_load({kernelFile})");
        lock (functions)
            moduleFiles[module] = kernelFile;
        return new GpuModule(module);
    }

    /// <inheritdoc/>
    public void UnloadModule(GpuModule module)
    {
        MakeCurrent();
        EmuNative.Check(EmuNative.ModuleUnload(module.Handle));
    }

    /// <inheritdoc/>
    public GpuFunction GetFunction(GpuModule module, string entryPoint)
    {
        EmuNative.Check(EmuNative.ModuleGetFunction(out var function, module.Handle, entryPoint), $"e3emu_module_get_function({entryPoint})");
        EmuNative.Check(EmuNative.FunctionParamCount(function, out var count));
        lock (functions)
        {
            if (!functions.ContainsKey(function))
                functions[function] = new FunctionState(entryPoint, moduleFiles.GetValueOrDefault(module.Handle, ""), count, DefaultDynamicSharedBytes, OptedIn: false);
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
        if (LaunchLimits?.Refusal(state.File, state.Name, threads: 1, dynamicSharedBytes: 0, maxDynamicSharedBytes: bytes) is { } why)
            throw new EmuException(EmuResult.InvalidValue, EmuNative.ErrorName(EmuResult.InvalidValue), $"cuFuncSetAttribute({state.Name}, max dynamic shared memory = {bytes})", why);
        lock (functions)
            functions[function.Handle] = state with { MaxDynamicSharedBytes = bytes, OptedIn = true };
    }

    /// <summary>
    /// Queues the grid (runs it at once in immediate mode). Checks at the call, as the driver fails the launch, that the
    /// argument count matches the kernel's parameter list and that dynamic shared memory stays within the opted-in
    /// limit; a failure inside the kernel is reported when the host waits for the stream.
    /// </summary>
    public void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args)
    {
        RequireCurrent("cuLaunchKernel");
        var state = State(function);
        if (args.Count != state.ParameterCount)
            throw new ArgumentException($"kernel {state.Name} takes {state.ParameterCount} parameters, {args.Count} given", nameof(args));
        if (shape.DynamicSharedBytes > state.MaxDynamicSharedBytes)
            throw new ArgumentException(
                $"kernel {state.Name}: {shape.DynamicSharedBytes} bytes of dynamic shared memory exceed its limit of {state.MaxDynamicSharedBytes} (raise it with SetMaxDynamicSharedBytes)",
                nameof(shape));
        nint* block = stackalloc nint[Math.Max(1, args.Count)];
        args.WritePointers(new Span<nint>(block, args.Count));
        // The checks cuLaunchKernel makes at the call (grid, block, shared memory), for a launch that runs later.
        EmuNative.Check(EmuNative.LaunchCheck(function.Handle, shape.Grid.X, shape.Grid.Y, shape.Grid.Z, shape.Block.X, shape.Block.Y, shape.Block.Z,
            shape.DynamicSharedBytes, (void**)block), $"launch of {state.Name}");
        if (LaunchLimits?.Refusal(state.File, state.Name, (int)((long)shape.Block.X * shape.Block.Y * shape.Block.Z), (int)shape.DynamicSharedBytes,
                state.OptedIn ? state.MaxDynamicSharedBytes : null) is { } refusal)
            throw new EmuException(EmuResult.LaunchOutOfResources, EmuNative.ErrorName(EmuResult.LaunchOutOfResources), $"launch of {state.Name}", refusal);
        // cuLaunchKernel copies the argument values at the call; so must a launch that runs later.
        var values = new ulong[(args.SizeInBytes + 7) / 8 + 1];
        args.Bytes.CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
        var offsets = new int[args.Count];
        for (int i = 0; i < offsets.Length; i++)
            offsets[i] = args.OffsetOf(i);
        var launch = shape;
        var handle = function.Handle;
        Submit(stream, $"launch of {state.Name}", what =>
        {
            fixed (ulong* v = values)
            {
                nint* copied = stackalloc nint[Math.Max(1, offsets.Length)];
                for (int i = 0; i < offsets.Length; i++)
                    copied[i] = (nint)((byte*)v + offsets[i]);
                EmuNative.Check(EmuNative.Launch(handle, launch.Grid.X, launch.Grid.Y, launch.Grid.Z, launch.Block.X, launch.Block.Y, launch.Block.Z,
                    launch.DynamicSharedBytes, stream.Handle, (void**)copied), what);
            }
        });
    }

    /// <summary>cublasGemmEx / cublasGemmStridedBatchedEx semantics (column-major, fp32 accumulation, TF32 operands when asked) on the CPU.</summary>
    public void Gemm(in GemmDescriptor gemm, GpuStream stream)
    {
        gemm.Validate();
        if (gemm.M == 0 || gemm.N == 0)
            return;
        var queued = gemm;
        Submit(stream, $"e3emu_gemm{(gemm.BatchCount == 1 ? "_ex" : "_strided_batched_ex")}(m={gemm.M}, n={gemm.N}, k={gemm.K}, batch={gemm.BatchCount})",
            _ => RunGemm(queued));
    }

    private static void RunGemm(in GemmDescriptor gemm)
    {
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

    /// <summary>
    /// Runs what is still queued, then marks the device closed; the emulator runtime lives for the process (its workers
    /// are never joined).
    /// </summary>
    public void Dispose()
    {
        if (disposed)
            return;
        try
        {
            deferred?.DrainAll();
        }
        finally
        {
            disposed = true;
        }
    }

    /// <summary>
    /// What <c>CudaDevice.MakeCurrent</c> does: the calling thread may now launch, copy and wait. CudaDevice does it
    /// when opened and in every allocation, stream, event and module call, and so does the emulator.
    /// </summary>
    public void MakeCurrent()
    {
        lock (currentThreads)
            currentThreads.Add(Environment.CurrentManagedThreadId);
    }

    // A launch, copy, fill or event record runs in whatever context is current on the calling thread; CudaDevice does
    // not make its own current there (a driver call per kernel), so on a thread where it never was the driver fails
    // the call. The emulator has no contexts and would run it: refuse it as the driver would. Waits, attribute queries
    // and GEMMs are not checked: they name their stream, event or function, or (cuBLAS) bind the primary context
    // themselves, so a GPU may accept them there.
    private void RequireCurrent(string call)
    {
        lock (currentThreads)
            if (currentThreads.Contains(Environment.CurrentManagedThreadId))
                return;
        throw new EmuException(EmuResult.InvalidContext, "CUDA_ERROR_INVALID_CONTEXT", call,
            $"thread {Environment.CurrentManagedThreadId} never made the device's context current (opening it, allocating, or creating a stream, event or module does; MakeCurrent does)");
    }

    // Runs now in immediate mode, else when the stream reaches it; snapshotBytes is what the work holds of a pageable source.
    private void Submit(GpuStream stream, string what, Action<string> run, long snapshotBytes = 0)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (deferred is null)
            run(what);
        else
            deferred.Submit(stream.Handle, what, () => run(what), snapshotBytes);
    }

    // A queued copy or fill is checked at the call, as the driver checks its pointers there; it runs later.
    private void CheckRange(DevicePtr pointer, long bytes, string what)
    {
        if (deferred is not null)
            EmuNative.Check(EmuNative.RangeCheck(pointer.Address, Size(bytes)), what);
    }

    private bool IsPinned(void* pointer, long bytes)
    {
        var start = (nuint)pointer;
        lock (pinned)
            foreach (var (at, size) in pinned)
                if (start >= at && start - at + (nuint)bytes <= (nuint)size)
                    return true;
        return false;
    }

    private FunctionState State(GpuFunction function)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        lock (functions)
            return functions.TryGetValue(function.Handle, out var state)
                ? state
                : throw new ArgumentException($"function handle 0x{function.Handle:x} was not obtained from this device's GetFunction", nameof(function));
    }

    private static nuint Size(long bytes) => bytes > 0 ? (nuint)bytes : throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "must not be negative");

    private readonly record struct FunctionState(string Name, string File, int ParameterCount, int MaxDynamicSharedBytes, bool OptedIn);
}
