using System.Text;
using E3.Interop.Cublas;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Interop.Nvrtc;

namespace E3.Interop.Driver;

/// <summary>
/// <see cref="IGpuDevice"/> over the real driver API and cuBLAS. Holds a retain on the device's primary
/// context (made current on the creating thread), compiles catalog kernels for the device's exact SM (PTX
/// for the newest NVRTC arch when the GPU is newer), and creates its cuBLAS handle on first GEMM.
/// Dispose releases cuBLAS and then the context; modules, buffers, streams and events must be disposed first.
/// </summary>
internal sealed unsafe class CudaDevice : IGpuDevice
{
    private const int JitLogBytes = 16 * 1024;
    private readonly PrimaryContext context;
    private readonly KernelCompiler compiler;
    private CublasHandle? cublas;
    private bool disposed;

    private CudaDevice(int ordinal, KernelCompiler compiler)
    {
        Info = CudaDriver.GetDeviceInfo(ordinal);
        // The target needs NVRTC (which may be missing) and a supported SM: known before the context is retained.
        Target = KernelTarget.ForDevice(Info.ComputeCapability, NvrtcCompiler.SupportedArchitectures);
        context = new PrimaryContext(CudaDriver.GetDevice(ordinal));
        context.MakeCurrent();
        this.compiler = compiler;
    }

    /// <summary>Opens device <paramref name="ordinal"/> with the embedded kernel catalog and the default on-disk cache.</summary>
    public static CudaDevice Open(int ordinal = 0) =>
        Open(ordinal, new KernelCompiler(KernelCatalog.Embedded, new KernelCache(KernelCache.DefaultDirectory())));

    /// <summary>Opens device <paramref name="ordinal"/> compiling kernels with <paramref name="compiler"/>.</summary>
    public static CudaDevice Open(int ordinal, KernelCompiler compiler)
    {
        ArgumentNullException.ThrowIfNull(compiler);
        int count = CudaDriver.DeviceCount;
        if ((uint)ordinal >= (uint)count)
            throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal, $"there are {count} CUDA devices");
        return new CudaDevice(ordinal, compiler);
    }

    /// <inheritdoc/>
    public GpuDeviceInfo Info { get; }

    /// <summary>What kernels are compiled to for this device.</summary>
    public KernelTarget Target { get; }

    /// <summary>Makes this device's context current on the calling thread (needed once per thread).</summary>
    public void MakeCurrent() => context.MakeCurrent();

    /// <inheritdoc/>
    public DeviceAllocations Allocations { get; } = new();

    /// <inheritdoc/>
    public DevicePtr Allocate(long bytes)
    {
        context.MakeCurrent();
        ulong pointer;
        CudaException.Check(DriverApi.cuMemAlloc(&pointer, (nuint)bytes), $"cuMemAlloc({bytes} bytes)");
        Allocations.Allocated(new DevicePtr(pointer), bytes);
        return new DevicePtr(pointer);
    }

    /// <inheritdoc/>
    public void Free(DevicePtr pointer)
    {
        context.MakeCurrent();
        CudaException.Check(DriverApi.cuMemFree(pointer.Address), "cuMemFree");
        Allocations.Freed(pointer);
    }

    /// <inheritdoc/>
    public DevicePtr AllocateAsync(long bytes, GpuStream stream)
    {
        context.MakeCurrent();
        ulong pointer;
        CudaException.Check(DriverApi.cuMemAllocAsync(&pointer, (nuint)bytes, stream.Handle), $"cuMemAllocAsync({bytes} bytes)");
        Allocations.Allocated(new DevicePtr(pointer), bytes);
        return new DevicePtr(pointer);
    }

    /// <inheritdoc/>
    public void FreeAsync(DevicePtr pointer, GpuStream stream)
    {
        context.MakeCurrent();
        CudaException.Check(DriverApi.cuMemFreeAsync(pointer.Address, stream.Handle), "cuMemFreeAsync");
        Allocations.Freed(pointer);
    }

    /// <inheritdoc/>
    public void* AllocatePinned(long bytes)
    {
        context.MakeCurrent();
        void* pointer;
        CudaException.Check(DriverApi.cuMemHostAlloc(&pointer, (nuint)bytes, DriverConstants.MemHostAllocPortable), $"cuMemHostAlloc({bytes} bytes)");
        return pointer;
    }

    /// <inheritdoc/>
    public void FreePinned(void* pointer)
    {
        context.MakeCurrent();
        CudaException.Check(DriverApi.cuMemFreeHost(pointer), "cuMemFreeHost");
    }

    /// <inheritdoc/>
    public void CopyToDeviceAsync(DevicePtr destination, void* source, long bytes, GpuStream stream) =>
        CudaException.Check(DriverApi.cuMemcpyHtoDAsync(destination.Address, source, (nuint)bytes, stream.Handle), "cuMemcpyHtoDAsync");

    /// <inheritdoc/>
    public void CopyToHostAsync(void* destination, DevicePtr source, long bytes, GpuStream stream) =>
        CudaException.Check(DriverApi.cuMemcpyDtoHAsync(destination, source.Address, (nuint)bytes, stream.Handle), "cuMemcpyDtoHAsync");

    /// <inheritdoc/>
    public void CopyAsync(DevicePtr destination, DevicePtr source, long bytes, GpuStream stream) =>
        CudaException.Check(DriverApi.cuMemcpyDtoDAsync(destination.Address, source.Address, (nuint)bytes, stream.Handle), "cuMemcpyDtoDAsync");

    /// <inheritdoc/>
    public void FillBytesAsync(DevicePtr destination, byte value, long count, GpuStream stream) =>
        CudaException.Check(DriverApi.cuMemsetD8Async(destination.Address, value, (nuint)count, stream.Handle), "cuMemsetD8Async");

    /// <inheritdoc/>
    public void FillWordsAsync(DevicePtr destination, uint value, long count, GpuStream stream) =>
        CudaException.Check(DriverApi.cuMemsetD32Async(destination.Address, value, (nuint)count, stream.Handle), "cuMemsetD32Async");

    /// <inheritdoc/>
    public GpuStream CreateStream()
    {
        context.MakeCurrent();
        nint stream;
        CudaException.Check(DriverApi.cuStreamCreate(&stream, DriverConstants.StreamNonBlocking), "cuStreamCreate");
        return new GpuStream(stream);
    }

    /// <inheritdoc/>
    public void DestroyStream(GpuStream stream)
    {
        context.MakeCurrent();
        CudaException.Check(DriverApi.cuStreamDestroy(stream.Handle), "cuStreamDestroy");
    }

    /// <inheritdoc/>
    public void Synchronize(GpuStream stream) => CudaException.Check(DriverApi.cuStreamSynchronize(stream.Handle), "cuStreamSynchronize");

    /// <inheritdoc/>
    public GpuEvent CreateEvent(bool timing)
    {
        context.MakeCurrent();
        nint gpuEvent;
        CudaException.Check(DriverApi.cuEventCreate(&gpuEvent, timing ? 0u : DriverConstants.EventDisableTiming), "cuEventCreate");
        return new GpuEvent(gpuEvent);
    }

    /// <inheritdoc/>
    public void DestroyEvent(GpuEvent gpuEvent)
    {
        context.MakeCurrent();
        CudaException.Check(DriverApi.cuEventDestroy(gpuEvent.Handle), "cuEventDestroy");
    }

    /// <inheritdoc/>
    public void Record(GpuEvent gpuEvent, GpuStream stream) => CudaException.Check(DriverApi.cuEventRecord(gpuEvent.Handle, stream.Handle), "cuEventRecord");

    /// <inheritdoc/>
    public void Synchronize(GpuEvent gpuEvent) => CudaException.Check(DriverApi.cuEventSynchronize(gpuEvent.Handle), "cuEventSynchronize");

    /// <inheritdoc/>
    public float ElapsedMilliseconds(GpuEvent start, GpuEvent end)
    {
        float milliseconds;
        CudaException.Check(DriverApi.cuEventElapsedTime(&milliseconds, start.Handle, end.Handle), "cuEventElapsedTime");
        return milliseconds;
    }

    /// <summary>Compiles (or takes from the cache) the catalog file for <see cref="Target"/> and loads it, capturing the JIT logs.</summary>
    public GpuModule LoadModule(string kernelFile)
    {
        var compiled = compiler.Compile(kernelFile, Target);
        context.MakeCurrent();
        var info = new byte[JitLogBytes];
        var error = new byte[JitLogBytes];
        int* options = stackalloc int[5];
        void** values = stackalloc void*[5];
        nint module;
        int result;
        fixed (byte* image = compiled.Image, infoLog = info, errorLog = error)
        {
            options[0] = DriverConstants.JitInfoLogBuffer; values[0] = infoLog;
            options[1] = DriverConstants.JitInfoLogBufferSizeBytes; values[1] = (void*)(nint)JitLogBytes;
            options[2] = DriverConstants.JitErrorLogBuffer; values[2] = errorLog;
            options[3] = DriverConstants.JitErrorLogBufferSizeBytes; values[3] = (void*)(nint)JitLogBytes;
            options[4] = DriverConstants.JitLogVerbose; values[4] = (void*)1;
            result = DriverApi.cuModuleLoadDataEx(&module, image, 5, options, values);
        }
        CudaException.Check(result, $"cuModuleLoadDataEx({kernelFile}.cu, {Target})", CString(error) is { Length: > 0 } e ? e : CString(info));
        return new GpuModule(module);
    }

    /// <inheritdoc/>
    public void UnloadModule(GpuModule module)
    {
        context.MakeCurrent();
        CudaException.Check(DriverApi.cuModuleUnload(module.Handle), "cuModuleUnload");
    }

    /// <inheritdoc/>
    public GpuFunction GetFunction(GpuModule module, string entryPoint)
    {
        var name = NvrtcCompiler.Utf8z(entryPoint);
        nint function;
        fixed (byte* n = name)
            CudaException.Check(DriverApi.cuModuleGetFunction(&function, module.Handle, n), $"cuModuleGetFunction({entryPoint})");
        return new GpuFunction(function);
    }

    /// <inheritdoc/>
    public GpuFunctionAttributes GetAttributes(GpuFunction function) => new(
        FunctionAttribute(function, DriverConstants.FunctionNumRegs),
        FunctionAttribute(function, DriverConstants.FunctionSharedSizeBytes),
        FunctionAttribute(function, DriverConstants.FunctionMaxDynamicSharedSizeBytes),
        FunctionAttribute(function, DriverConstants.FunctionMaxThreadsPerBlock),
        FunctionAttribute(function, DriverConstants.FunctionLocalSizeBytes));

    /// <inheritdoc/>
    public void SetMaxDynamicSharedBytes(GpuFunction function, int bytes) =>
        CudaException.Check(DriverApi.cuFuncSetAttribute(function.Handle, DriverConstants.FunctionMaxDynamicSharedSizeBytes, bytes), $"cuFuncSetAttribute(max dynamic shared = {bytes})");

    /// <summary>Launches with a stack-allocated <c>void**</c> block pointing into <paramref name="args"/>: no allocation, no boxing.</summary>
    public void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args)
    {
        nint* block = stackalloc nint[Math.Max(1, args.Count)];
        args.WritePointers(new Span<nint>(block, args.Count));
        CudaException.Check(DriverApi.cuLaunchKernel(function.Handle, shape.Grid.X, shape.Grid.Y, shape.Grid.Z,
            shape.Block.X, shape.Block.Y, shape.Block.Z, shape.DynamicSharedBytes, stream.Handle, (void**)block, null), "cuLaunchKernel");
    }

    /// <inheritdoc/>
    public void Gemm(in GemmDescriptor gemm, GpuStream stream)
    {
        cublas ??= CreateCublas();
        cublas.Gemm(gemm, stream);
    }

    /// <summary>The cuBLAS version, creating the handle if needed.</summary>
    public int CublasVersion => (cublas ??= CreateCublas()).Version;

    /// <summary>Destroys the cuBLAS handle (in this context) and releases the primary context.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        if (cublas is not null)
        {
            context.MakeCurrent();
            cublas.Dispose();
        }
        context.Dispose();
    }

    private CublasHandle CreateCublas()
    {
        context.MakeCurrent();
        return new CublasHandle();
    }

    private static int FunctionAttribute(GpuFunction function, int attribute)
    {
        int value;
        CudaException.Check(DriverApi.cuFuncGetAttribute(&value, attribute, function.Handle), $"cuFuncGetAttribute({attribute})");
        return value;
    }

    private static string CString(byte[] buffer)
    {
        int length = Array.IndexOf(buffer, (byte)0);
        return Encoding.UTF8.GetString(buffer, 0, length < 0 ? buffer.Length : length).Trim();
    }
}
