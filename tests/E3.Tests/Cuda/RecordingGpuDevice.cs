using E3.Interop.Gpu;

namespace E3.Tests.Cuda;

/// <summary>One launch as a typed wrapper issued it.</summary>
internal sealed record RecordedLaunch(string EntryPoint, LaunchShape Shape, GpuStream Stream, KernelArgKind[] Kinds, int[] Offsets, int[] Sizes, byte[] Bytes)
{
    public T Read<T>(int index) where T : unmanaged => System.Runtime.InteropServices.MemoryMarshal.Read<T>(Bytes.AsSpan(Offsets[index], Sizes[index]));
}

/// <summary>
/// A test double standing where the driver or the emulator would: it records module loads and launches so
/// the wrappers' parameter blocks and launch shapes can be checked without a GPU. Memory, streams and GEMMs
/// are not part of what the wrappers do, so those members refuse.
/// </summary>
internal sealed class RecordingGpuDevice : IGpuDevice
{
    /// <summary>Every entry point looked up, in order; a GpuFunction handle is its 1-based index here.</summary>
    public List<string> FunctionNames { get; } = [];

    public List<string> LoadedModules { get; } = [];
    public List<string> UnloadedModules { get; } = [];
    public List<RecordedLaunch> Launches { get; } = [];

    public GpuDeviceInfo Info { get; } = new(0, "recorder", 90, 132, 80L << 30, 50 << 20, 227 << 10);

    public GpuModule LoadModule(string kernelFile)
    {
        LoadedModules.Add(kernelFile);
        return new GpuModule(LoadedModules.Count);
    }

    public void UnloadModule(GpuModule module) => UnloadedModules.Add(LoadedModules[(int)module.Handle - 1]);

    public GpuFunction GetFunction(GpuModule module, string entryPoint)
    {
        FunctionNames.Add(entryPoint);
        return new GpuFunction(FunctionNames.Count);
    }

    public void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args)
    {
        var kinds = new KernelArgKind[args.Count];
        var offsets = new int[args.Count];
        var sizes = new int[args.Count];
        for (int i = 0; i < args.Count; i++)
        {
            kinds[i] = args.KindOf(i);
            offsets[i] = args.OffsetOf(i);
            sizes[i] = args.SizeOf(i);
        }
        Launches.Add(new RecordedLaunch(FunctionNames[(int)function.Handle - 1], shape, stream, kinds, offsets, sizes, args.Bytes.ToArray()));
    }

    public GpuFunctionAttributes GetAttributes(GpuFunction function) => throw Unused();
    public void SetMaxDynamicSharedBytes(GpuFunction function, int bytes) => throw Unused();
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

    private static NotSupportedException Unused() => new("the recording device only records module loads and launches");
}
