using System.Reflection;

namespace E3.Interop.Kernels;

/// <summary>
/// The kernel sources: every <c>kernels/*.cu</c> plus the headers they include (<c>common.cuh</c>).
/// <see cref="Embedded"/> reads them from this assembly's manifest resources (<c>e3.kernels.&lt;file&gt;</c>),
/// so a published <c>e3</c> needs no source tree.
/// </summary>
internal sealed class KernelCatalog
{
    private const string ResourcePrefix = "e3.kernels.";
    private static readonly Lazy<KernelCatalog> EmbeddedCatalog = new(LoadEmbedded);
    private readonly Dictionary<string, KernelSource> sources;

    /// <summary>Creates a catalog from explicit files (file name to text); <c>.cu</c> files are kernels, the rest headers.</summary>
    public KernelCatalog(IReadOnlyDictionary<string, string> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        sources = files.Where(f => f.Key.EndsWith(".cu", StringComparison.Ordinal))
            .ToDictionary(f => Path.GetFileNameWithoutExtension(f.Key), f => new KernelSource(Path.GetFileNameWithoutExtension(f.Key), f.Key, f.Value), StringComparer.Ordinal);
        Headers = files.Where(f => !f.Key.EndsWith(".cu", StringComparison.Ordinal))
            .OrderBy(f => f.Key, StringComparer.Ordinal)
            .ToDictionary(f => f.Key, f => f.Value, StringComparer.Ordinal);
        Names = sources.Keys.Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>The catalog built into E3.Interop.</summary>
    public static KernelCatalog Embedded => EmbeddedCatalog.Value;

    /// <summary>Kernel file names without extension, sorted.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Headers by include name (e.g. <c>common.cuh</c>), passed to NVRTC with every kernel.</summary>
    public IReadOnlyDictionary<string, string> Headers { get; }

    /// <summary>The kernel file <paramref name="name"/> (e.g. <c>rmsnorm</c>).</summary>
    /// <exception cref="KeyNotFoundException">No such kernel; the message lists the ones that exist.</exception>
    public KernelSource Get(string name) => sources.TryGetValue(name, out var source)
        ? source
        : throw new KeyNotFoundException($"No kernel file '{name}.cu' in the catalog; available: {string.Join(", ", Names)}");

    private static KernelCatalog LoadEmbedded()
    {
        var assembly = typeof(KernelCatalog).Assembly;
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var resource in assembly.GetManifestResourceNames().Where(r => r.StartsWith(ResourcePrefix, StringComparison.Ordinal)))
            files[resource[ResourcePrefix.Length..]] = ReadResource(assembly, resource);
        return new KernelCatalog(files);
    }

    private static string ReadResource(Assembly assembly, string resource)
    {
        using var stream = assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"manifest resource '{resource}' disappeared from {assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
