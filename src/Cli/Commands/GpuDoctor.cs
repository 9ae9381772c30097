using System.Text;
using E3.Interop.Cublas;
using E3.Interop.Driver;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Interop.Nvrtc;

namespace E3.Cli.Commands;

/// <summary>What <c>e3 gpu doctor</c> found. Each part is either filled in or carries the reason it could not be.</summary>
/// <param name="DriverVersion">CUDA version the driver supports, or null.</param>
/// <param name="DriverProblem">Why the driver could not be queried, or null.</param>
/// <param name="Gpus">Every device the driver sees (empty without a driver).</param>
/// <param name="NvrtcVersion">NVRTC version, or null.</param>
/// <param name="NvrtcArchitectures">SM versions NVRTC can compile for.</param>
/// <param name="NvrtcProblem">Why NVRTC is unusable, or null.</param>
/// <param name="CublasVersion">cuBLAS version, or null.</param>
/// <param name="CublasProblem">Why cuBLAS is unusable, or null.</param>
/// <param name="KernelCacheFolder">Where compiled kernels are cached.</param>
internal sealed record GpuDoctorReport(
    Version? DriverVersion, string? DriverProblem, IReadOnlyList<GpuDeviceInfo> Gpus,
    Version? NvrtcVersion, IReadOnlyList<int> NvrtcArchitectures, string? NvrtcProblem,
    Version? CublasVersion, string? CublasProblem, string KernelCacheFolder)
{
    /// <summary>A human-readable multi-line summary.</summary>
    public string ToText()
    {
        var text = new StringBuilder();
        text.AppendLine(DriverVersion is { } driver ? $"CUDA driver: {driver}" : $"CUDA driver: unavailable ({DriverProblem})");
        foreach (var gpu in Gpus)
            text.AppendLine($"  GPU {gpu.Ordinal}: {gpu.Name}, sm_{gpu.ComputeCapability}, {gpu.TotalMemoryBytes / (1L << 20)} MiB, {gpu.MultiprocessorCount} SMs, L2 {gpu.L2CacheBytes / 1024} KiB");
        if (DriverVersion is not null && Gpus.Count == 0)
            text.AppendLine("  no GPUs");
        text.AppendLine(NvrtcVersion is { } nvrtc
            ? $"NVRTC: {nvrtc}, archs sm_{string.Join(", sm_", NvrtcArchitectures)}"
            : $"NVRTC: unavailable ({NvrtcProblem})");
        text.AppendLine(CublasVersion is { } cublas ? $"cuBLAS: {cublas}" : $"cuBLAS: unavailable ({CublasProblem})");
        text.AppendLine($"Kernel cache: {KernelCacheFolder}");
        return text.ToString();
    }
}

/// <summary>Checks the CUDA stack piece by piece; never throws for a missing driver, GPU or library.</summary>
public static class GpuDoctor
{
    /// <summary>Examines driver, GPUs, NVRTC, cuBLAS and the kernel cache location.</summary>
    internal static GpuDoctorReport Examine()
    {
        var (driverVersion, gpus, driverProblem) = ExamineDriver();
        var (nvrtcVersion, archs, nvrtcProblem) = ExamineNvrtc();
        var (cublasVersion, cublasProblem) = Attempt(() => CublasHandle.LibraryVersion);
        return new GpuDoctorReport(driverVersion, driverProblem, gpus, nvrtcVersion, archs, nvrtcProblem,
            cublasVersion, cublasProblem, KernelCache.DefaultDirectory());
    }

    private static (Version?, IReadOnlyList<GpuDeviceInfo>, string?) ExamineDriver()
    {
        var (version, problem) = Attempt(() => CudaDriver.DriverVersion);
        if (version is null)
            return (null, [], problem);
        var (gpus, gpuProblem) = Attempt<IReadOnlyList<GpuDeviceInfo>>(() =>
            Enumerable.Range(0, CudaDriver.DeviceCount).Select(CudaDriver.GetDeviceInfo).ToArray());
        return (version, gpus ?? [], gpuProblem);
    }

    private static (Version?, IReadOnlyList<int>, string?) ExamineNvrtc()
    {
        var (version, problem) = Attempt(() => NvrtcCompiler.Version);
        if (version is null)
            return (null, [], problem);
        var (archs, archProblem) = Attempt(() => NvrtcCompiler.SupportedArchitectures);
        return (version, archs ?? [], archProblem);
    }

    // The doctor reports problems instead of failing on them: a missing library, a driver without GPUs
    // (cuInit returns CUDA_ERROR_NO_DEVICE) and a broken install all end up as text in the report.
    private static (T?, string?) Attempt<T>(Func<T> query) where T : class
    {
        try
        {
            return (query(), null);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or CudaException or NvrtcException or CublasException)
        {
            return (null, e.Message);
        }
    }
}
