using E3.Interop.Nvrtc;

namespace E3.Interop.Kernels;

/// <summary>A compiled kernel file for one target.</summary>
/// <param name="Name">Kernel file name without extension (the module name).</param>
/// <param name="Target">What it was compiled for.</param>
/// <param name="Image">CUBIN bytes, or NUL-terminated PTX text for <see cref="KernelImageKind.Ptx"/>.</param>
/// <param name="Log">NVRTC's log, including the ptxas report for CUBIN.</param>
/// <param name="Resources">The parsed ptxas report (empty for PTX: ptxas has not run).</param>
/// <param name="Cache">How the cache lookup went.</param>
internal sealed record CompiledKernelModule(
    string Name, KernelTarget Target, byte[] Image, string Log, IReadOnlyList<KernelResources> Resources, KernelCacheOutcome Cache);

/// <summary>Compiles catalog kernels with NVRTC, going through the on-disk cache when one is given.</summary>
internal sealed class KernelCompiler
{
    private readonly KernelCatalog catalog;
    private readonly KernelCache? cache;

    /// <summary>Compiles from <paramref name="catalog"/>; <paramref name="cache"/> null disables caching.</summary>
    public KernelCompiler(KernelCatalog catalog, KernelCache? cache)
    {
        this.catalog = catalog ?? throw new ArgumentNullException(nameof(catalog));
        this.cache = cache;
    }

    /// <summary>The catalog compiled from.</summary>
    public KernelCatalog Catalog => catalog;

    /// <summary>Returns the image for <paramref name="name"/> on <paramref name="target"/>, from cache or freshly compiled.</summary>
    /// <exception cref="NvrtcException">Compilation failed; the message holds NVRTC's log.</exception>
    /// <exception cref="KeyNotFoundException">No such kernel file.</exception>
    public CompiledKernelModule Compile(string name, KernelTarget target)
    {
        var source = catalog.Get(name);
        var options = KernelCompileOptions.For(source, target);
        if (cache is null)
            return Build(source, target, options, KernelCacheOutcome.Disabled);
        var key = KernelCacheKey.Compute(source, catalog.Headers, options, target, NvrtcCompiler.Version);
        var outcome = cache.TryRead(key, out var image, out var log);
        if (outcome == KernelCacheOutcome.Hit)
            return new CompiledKernelModule(name, target, image, log, ResourceReport.Parse(log), KernelCacheOutcome.Hit);
        var built = Build(source, target, options, outcome);
        try
        {
            cache.Write(key, built.Image, built.Log);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The cache only saves time: a read-only or full cache folder must not stop the kernel from loading.
            return built with { Log = built.Log + $"{Environment.NewLine}e3: kernel cache not written ({cache.PathFor(key)}): {e.Message}" };
        }
        return built;
    }

    private CompiledKernelModule Build(KernelSource source, KernelTarget target, IReadOnlyList<string> options, KernelCacheOutcome outcome)
    {
        using var program = new NvrtcProgram(source.Text, source.FileName, catalog.Headers);
        program.Compile(options);
        var log = program.GetLog();
        var image = target.Kind == KernelImageKind.Cubin
            ? program.GetCubin()
            : System.Text.Encoding.UTF8.GetBytes(program.GetPtx() + "\0"); // cuModuleLoadData wants NUL-terminated PTX
        return new CompiledKernelModule(source.Name, target, image, log, ResourceReport.Parse(log), outcome);
    }
}
