namespace E3.Interop.Emulator;

/// <summary>A kernel compiled into the emulator library.</summary>
internal sealed record EmuFunction(string Module, string Name, nint Handle, int ParameterCount);

/// <summary>
/// The CUDA CPU emulator as a device: loads the library (see <see cref="EmuLibrary"/>), looks kernels up by
/// module (kernel file stem) and name, allocates memory and launches. Every failure is an
/// <see cref="EmuException"/> carrying the CUresult name and the emulator's message.
/// </summary>
internal sealed unsafe class EmuDevice : IDisposable
{
    private EmuDevice(string libraryPath) => LibraryPath = libraryPath;

    /// <summary>The emulator library file in use.</summary>
    public string LibraryPath { get; }

    /// <summary>Worker threads that run blocks in parallel (the caller included).</summary>
    public int WorkerCount => EmuNative.WorkerCount();

    /// <summary>Loads the library (<c>E3_EMU_LIB</c> overrides <paramref name="libraryFileName"/>) and initialises it.</summary>
    public static EmuDevice Open(string libraryFileName = EmuLibrary.ProductFileName)
    {
        var path = EmuLibrary.Load(libraryFileName);
        EmuNative.Check(EmuNative.Init(0));
        return new EmuDevice(path);
    }

    /// <summary>Finds kernel <paramref name="name"/> of module <paramref name="module"/>.</summary>
    public EmuFunction GetFunction(string module, string name)
    {
        EmuNative.Check(EmuNative.ModuleLoad(out var moduleHandle, module));
        EmuNative.Check(EmuNative.ModuleGetFunction(out var function, moduleHandle, name));
        EmuNative.Check(EmuNative.FunctionParamCount(function, out var count));
        return new EmuFunction(module, name, function, count);
    }

    public EmuBuffer Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        EmuNative.Check(EmuNative.MemAlloc(out var pointer, (nuint)bytes));
        return new EmuBuffer(pointer, bytes);
    }

    /// <summary>Allocates room for <paramref name="values"/> and uploads them.</summary>
    public EmuBuffer Upload<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        var buffer = Allocate((long)values.Length * sizeof(T));
        buffer.Upload(values);
        return buffer;
    }

    public EmuStream CreateStream()
    {
        EmuNative.Check(EmuNative.StreamCreate(out var handle));
        return new EmuStream(handle);
    }

    public EmuEvent CreateEvent()
    {
        EmuNative.Check(EmuNative.EventCreate(out var handle));
        return new EmuEvent(handle);
    }

    /// <summary>Runs <paramref name="function"/> over the grid and returns when every block is done.</summary>
    public void Launch(EmuFunction function, Dim3 grid, Dim3 block, uint sharedBytes, EmuStream? stream,
        params ReadOnlySpan<KernelArg> args)
    {
        if (args.Length != function.ParameterCount)
            throw new ArgumentException(
                $"kernel {function.Name} takes {function.ParameterCount} parameters, {args.Length} given", nameof(args));
        var values = stackalloc ulong[Math.Max(1, args.Length)];
        var slots = stackalloc void*[Math.Max(1, args.Length)];
        for (var i = 0; i < args.Length; i++)
        {
            values[i] = args[i].Bits;
            slots[i] = &values[i];
        }
        EmuNative.Check(EmuNative.Launch(function.Handle, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedBytes,
            stream?.Handle ?? 0, slots), $"launch of {function.Name}");
    }

    /// <summary>The emulator runtime lives for the process; disposing only marks this wrapper closed.</summary>
    public void Dispose() { }
}
