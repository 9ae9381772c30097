namespace E3.Interop.Kernels;

/// <summary>The NVRTC options for one kernel file and target, spelled out in one place.</summary>
internal static class KernelCompileOptions
{
    /// <summary>
    /// <c>-arch</c>, <c>-std=c++17</c>, <c>-lineinfo</c> (profilers map SASS to source lines at no runtime cost),
    /// <c>--use_fast_math</c> only for files that declare <c>// e3: fast-math</c>, and for CUBIN
    /// <c>--ptxas-options=-v</c> so the log carries the per-kernel resource report.
    /// </summary>
    public static IReadOnlyList<string> For(KernelSource source, KernelTarget target)
    {
        ArgumentNullException.ThrowIfNull(source);
        var options = new List<string> { $"-arch={target.Arch}", "-std=c++17", "-lineinfo" };
        if (source.FastMath)
            options.Add("--use_fast_math");
        if (target.Kind == KernelImageKind.Cubin)
            options.Add("--ptxas-options=-v");
        return options;
    }
}
