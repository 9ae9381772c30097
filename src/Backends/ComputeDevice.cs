using E3.Backends.Cpu;
using E3.Backends.Gpu;
using E3.Interop.Gpu;

namespace E3.Backends;

/// <summary>
/// Where the engine computes: <c>cpu</c> (C# SIMD, multithreaded), <c>cuda</c> (our kernels and cuBLAS on an NVIDIA GPU)
/// or <c>emu</c> (the same CUDA code path on the CPU emulator). A program linking E3 opens one, loads models onto it
/// (<c>DecoderModel.Load</c>) and disposes it after them; it owns the device's memory, streams and compiled kernels.
/// </summary>
/// <remarks>
/// A device opened for inference keeps activations in bf16 on a GPU, as inference does there. Mask search and
/// distillation run a backward pass, which computes in fp32: open the device with <see cref="ComputeDeviceOptions.Training"/>
/// for them. On the CPU both are the same fp32 backend.
/// </remarks>
public sealed class ComputeDevice : IDisposable
{
    readonly IBackend _backend;
    bool _disposed;

    ComputeDevice(IBackend backend, bool training)
    {
        _backend = backend;
        IsForTraining = training;
    }

    /// <summary>The names <see cref="Open"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["cpu", "cuda", "emu"];

    /// <summary>Opens the device <paramref name="name"/> (one of <see cref="Names"/>).</summary>
    /// <exception cref="ArgumentException">An unknown name, or an option the device cannot honour (TF32 on the CPU).</exception>
    /// <exception cref="E3.Interop.Gpu.GpuDeviceUnavailableException">cuda: no driver, no GPU, or NVRTC or cuBLAS missing (the
    /// message says which); emu: the emulator library was not built or not found.</exception>
    public static ComputeDevice Open(string name, ComputeDeviceOptions? options = null)
    {
        options ??= new ComputeDeviceOptions();
        return new ComputeDevice(CreateBackend(name, options), options.Training);
    }

    /// <summary>"cpu", "cuda" or "emu".</summary>
    public string Name => _backend.Name;

    /// <summary>Whether it was opened for mask search and distillation (fp32 activations on a GPU).</summary>
    public bool IsForTraining { get; }

    internal IBackend Backend
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _backend;
        }
    }

    /// <summary>
    /// The backend behind <see cref="Open"/>, for the engine's own commands, which hold it directly. A GPU's inference
    /// backend keeps bf16 activations; its training backend fp32, because the backward pass computes in fp32.
    /// </summary>
    internal static IBackend CreateBackend(string name, ComputeDeviceOptions options)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!Names.Contains(name)) throw new ArgumentException($"device '{name}' is not one of {string.Join(", ", Names)}", nameof(name));
        if (options.Threads < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Threads, $"{nameof(ComputeDeviceOptions.Threads)} must be 0 (all cores) or positive");
        if (options.Tf32 && name is not ("cuda" or "emu"))
            throw new ArgumentException($"{nameof(ComputeDeviceOptions.Tf32)}: the {name} device has no tensor cores; it needs cuda or emu", nameof(options));
        if (options.Tf32 && !options.Training)
            throw new ArgumentException($"{nameof(ComputeDeviceOptions.Tf32)} applies to the fp32 GEMMs of training; set {nameof(ComputeDeviceOptions.Training)} too", nameof(options));
        if (name == "cpu") return new CpuBackend(options.Threads);
        var gpu = GpuDevices.Open(name);
        return options.Training
            ? new GpuBackend(gpu, DType.F32, fp32Compute: options.Tf32 ? GemmCompute.FastTf32 : GemmCompute.Fp32)
            : new GpuBackend(gpu, DType.BF16);
    }

    /// <summary>Releases the device's memory, streams and kernels. Dispose the models loaded onto it first.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _backend.Dispose();
    }
}

/// <summary>How <see cref="ComputeDevice.Open"/> sets a device up.</summary>
public sealed record ComputeDeviceOptions
{
    /// <summary>For mask search and distillation: fp32 activations on a GPU, which their backward pass needs.</summary>
    public bool Training { get; init; }

    /// <summary>CPU threads; 0 uses every core. The GPU devices ignore it.</summary>
    public int Threads { get; init; }

    /// <summary>
    /// Training on a GPU only: run the fp32 GEMMs with TF32 operands on the tensor cores, about 8x the fp32 rate for a
    /// 10-bit mantissa in the products (the sums stay fp32).
    /// </summary>
    public bool Tf32 { get; init; }
}
