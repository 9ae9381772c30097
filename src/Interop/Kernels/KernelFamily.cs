using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>
/// Base of the typed wrappers: loads one kernel file as a module, looks entry points up once, and launches.
/// Subclasses only fill <see cref="KernelArgs"/> and pick a <see cref="LaunchShapes"/> shape.
/// </summary>
internal abstract class KernelFamily : IDisposable
{
    private readonly OwnedModule module;

    /// <summary>Loads <paramref name="kernelFile"/> on <paramref name="device"/>.</summary>
    protected KernelFamily(IGpuDevice device, string kernelFile)
    {
        Device = device ?? throw new ArgumentNullException(nameof(device));
        module = device.LoadOwnedModule(kernelFile);
    }

    /// <summary>The device launches go to.</summary>
    protected IGpuDevice Device { get; }

    /// <summary>Looks up <paramref name="entryPoint"/> in the module.</summary>
    protected GpuFunction Function(string entryPoint) => module.GetFunction(entryPoint);

    /// <summary>Launches unless the shape is empty (CUDA rejects zero-sized grids; nothing to do anyway).</summary>
    protected void Launch(GpuFunction function, in LaunchShape shape, GpuStream stream, scoped in KernelArgs args)
    {
        if (shape.Grid.Count != 0)
            Device.Launch(function, shape, stream, args);
    }

    /// <summary>Throws unless <paramref name="value"/> is at least <paramref name="minimum"/>.</summary>
    protected static void AtLeast(long value, long minimum, string name)
    {
        if (value < minimum)
            throw new ArgumentOutOfRangeException(name, value, $"must be >= {minimum}");
    }

    /// <summary>Unloads the module.</summary>
    public void Dispose()
    {
        module.Dispose();
        GC.SuppressFinalize(this);
    }
}
