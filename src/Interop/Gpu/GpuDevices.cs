using E3.Interop.Driver;
using E3.Interop.Emulator;
using E3.Interop.Native;

namespace E3.Interop.Gpu;

/// <summary>A requested device cannot be opened (no driver, no GPU, no emulator library); the message says which and why.</summary>
public sealed class GpuDeviceUnavailableException(string message, Exception inner) : Exception(message, inner);

/// <summary>Opens an <see cref="IGpuDevice"/> by the name the CLI's <c>--device</c> uses.</summary>
internal static class GpuDevices
{
    /// <summary>The names <see cref="Open"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["cuda", "emu"];

    /// <summary>
    /// "cuda": the real driver and cuBLAS on device <paramref name="ordinal"/>; "emu": the CPU emulator
    /// (<c>libe3emu.so</c>, or the file <c>E3_EMU_LIB</c> names).
    /// </summary>
    /// <exception cref="GpuDeviceUnavailableException">The driver, the GPU or the emulator library is missing.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is not one of <see cref="Names"/>.</exception>
    public static IGpuDevice Open(string name, int ordinal = 0) => name switch
    {
        "cuda" => OpenCuda(ordinal),
        "emu" => OpenEmulator(EmuLibrary.ProductFileName),
        _ => throw new ArgumentException($"unknown GPU device '{name}' (known: {string.Join(", ", Names)})", nameof(name)),
    };

    /// <summary>The emulator built from <paramref name="libraryFileName"/> (tests use <see cref="EmuLibrary.TestFileName"/>).</summary>
    public static IGpuDevice OpenEmulator(string libraryFileName)
    {
        try
        {
            return EmuGpuDevice.Open(libraryFileName);
        }
        catch (EmuLibraryNotFoundException e)
        {
            throw new GpuDeviceUnavailableException($"device emu: {e.Message}", e);
        }
    }

    private static IGpuDevice OpenCuda(int ordinal)
    {
        try
        {
            return CudaDevice.Open(ordinal);
        }
        catch (Exception e) when (e is CudaLibraryNotFoundException or CudaException or ArgumentOutOfRangeException)
        {
            // A driver and GPU without NVRTC or cuBLAS is a different fix from no driver at all: say which.
            string what = e is CudaLibraryNotFoundException { Library: not CudaLibrary.Driver } missing
                ? $"the {missing.Library} library is missing" : "no usable NVIDIA driver and GPU";
            throw new GpuDeviceUnavailableException($"device cuda (ordinal {ordinal}): {what}: {e.Message}", e);
        }
    }
}
