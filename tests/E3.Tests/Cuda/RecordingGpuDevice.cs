using E3.Interop.Gpu;

namespace E3.Tests.Cuda;

/// <summary>One launch as a typed wrapper issued it.</summary>
internal sealed record RecordedLaunch(string EntryPoint, LaunchShape Shape, GpuStream Stream, KernelArgKind[] Kinds, int[] Offsets, int[] Sizes, byte[] Bytes)
{
    public T Read<T>(int index) where T : unmanaged => System.Runtime.InteropServices.MemoryMarshal.Read<T>(Bytes.AsSpan(Offsets[index], Sizes[index]));
}

/// <summary>
/// A test double standing where the driver or the emulator would: it records module loads and launches so
/// the wrappers' parameter blocks and launch shapes can be checked without a GPU.
/// </summary>
internal sealed class RecordingGpuDevice : LaunchOnlyGpuDevice
{
    /// <summary>Every entry point looked up, in order; a GpuFunction handle is its 1-based index here.</summary>
    public List<string> FunctionNames { get; } = [];

    public List<string> LoadedModules { get; } = [];
    public List<string> UnloadedModules { get; } = [];
    public List<RecordedLaunch> Launches { get; } = [];

    public override GpuDeviceInfo Info { get; } = new(0, "recorder", 90, 132, 80L << 30, 50 << 20, 227 << 10);

    public override GpuModule LoadModule(string kernelFile)
    {
        LoadedModules.Add(kernelFile);
        return new GpuModule(LoadedModules.Count);
    }

    public override void UnloadModule(GpuModule module) => UnloadedModules.Add(LoadedModules[(int)module.Handle - 1]);

    public override GpuFunction GetFunction(GpuModule module, string entryPoint)
    {
        FunctionNames.Add(entryPoint);
        return new GpuFunction(FunctionNames.Count);
    }

    public override void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args)
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
}
