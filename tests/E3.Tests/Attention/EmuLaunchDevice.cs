using E3.Interop.Emulator;
using E3.Interop.Gpu;
using E3.Tests.Cuda;

namespace E3.Tests.Attention;

/// <summary>
/// Runs a typed kernel wrapper's launches on the CPU emulator: module and function lookups and launches go to
/// <see cref="EmuDevice"/>, everything else (memory, streams) stays with the test, which owns
/// <see cref="EmuBuffer"/>s directly. Shared-memory opt-ins are recorded so a test can see that one happened.
/// </summary>
internal sealed class EmuLaunchDevice(EmuDevice emulator, int multiprocessors, int sharedOptInLimit = 227 << 10) : LaunchOnlyGpuDevice
{
    private readonly List<string> modules = [];
    private readonly List<EmuFunction> functions = [];

    /// <summary>Entry points launched, in order, with their grid.</summary>
    public List<(string EntryPoint, LaunchShape Shape)> Launches { get; } = [];

    /// <summary>Dynamic shared memory opt-ins requested, per entry point.</summary>
    public List<(string EntryPoint, int Bytes)> SharedOptIns { get; } = [];

    public override GpuDeviceInfo Info { get; } = new(0, "emulator", 90, multiprocessors, 1L << 30, 1 << 20, sharedOptInLimit);

    public override GpuModule LoadModule(string kernelFile)
    {
        modules.Add(kernelFile);
        return new GpuModule(modules.Count);
    }

    public override void UnloadModule(GpuModule module) { }

    public override GpuFunction GetFunction(GpuModule module, string entryPoint)
    {
        functions.Add(emulator.GetFunction(modules[(int)module.Handle - 1], entryPoint));
        return new GpuFunction(functions.Count);
    }

    public override void SetMaxDynamicSharedBytes(GpuFunction function, int bytes) => SharedOptIns.Add((Lookup(function).Name, bytes));

    public override void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args)
    {
        var kernel = Lookup(function);
        var values = new KernelArg[args.Count];
        for (int i = 0; i < args.Count; i++)
        {
            values[i] = args.KindOf(i) switch
            {
                KernelArgKind.Pointer => KernelArg.Pointer(args.Read<ulong>(i)),
                KernelArgKind.Int32 => args.Read<int>(i),
                KernelArgKind.UInt32 => args.Read<uint>(i),
                KernelArgKind.Float32 => args.Read<float>(i),
                _ => args.Read<long>(i),
            };
        }
        Launches.Add((kernel.Name, shape));
        emulator.Launch(kernel, new Interop.Emulator.Dim3(shape.Grid.X, shape.Grid.Y, shape.Grid.Z),
            new Interop.Emulator.Dim3(shape.Block.X, shape.Block.Y, shape.Block.Z), shape.DynamicSharedBytes, null, values);
    }

    private EmuFunction Lookup(GpuFunction function) => functions[(int)function.Handle - 1];
}
