using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace E3.Interop.Native;

/// <summary>
/// Finds libcuda, libnvrtc and libcublas on an ordinary Linux install and binds the <c>LibraryImport</c>
/// declarations of this assembly to them. Search order for each library:
/// <list type="number">
/// <item><c>$E3_CUDA_LIB_DIR</c>, each versioned soname;</item>
/// <item>each bare soname, newest first, through the dynamic loader (LD_LIBRARY_PATH, ld.so.cache);</item>
/// <item>CUDA toolkit folders: <c>/usr/local/cuda/lib64</c>, <c>/usr/local/cuda-*/lib64</c> (newest first),
/// <c>/usr/lib/x86_64-linux-gnu</c> (and <c>/usr/lib/wsl/lib</c> for the driver);</item>
/// <item>pip wheels' <c>nvidia/*/lib</c> folders in <c>$VIRTUAL_ENV</c>, <c>$CONDA_PREFIX</c>,
/// <c>~/.local/lib/python3*/site-packages</c>, <c>/usr/local/lib/python3*/*-packages</c>,
/// <c>/usr/lib/python3*/*-packages</c>, in that order (the active environment wins).</item>
/// </list>
/// Only versioned sonames are loaded: the unversioned <c>libcuda.so</c> in a toolkit is a link-time stub.
/// </summary>
internal static class NativeLibraryResolver
{
    private static readonly Lazy<nint>[] Loaded =
    [
        new(() => Load(CudaLibrary.Driver, LibrarySearchEnvironment.FromProcess())),
        new(() => Load(CudaLibrary.Nvrtc, LibrarySearchEnvironment.FromProcess())),
        new(() => Load(CudaLibrary.Cublas, LibrarySearchEnvironment.FromProcess())),
    ];

    // A module initializer (normally meant for applications) because this assembly's own imports must be
    // bound by this resolver whichever of its types is used first; nothing outside E3.Interop is affected.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register() => NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, ResolveImport);

    /// <summary>The sonames tried for a library, newest first.</summary>
    public static IReadOnlyList<string> SonamesFor(CudaLibrary library) => library switch
    {
        CudaLibrary.Driver => ["libcuda.so.1"],
        CudaLibrary.Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"],
        CudaLibrary.Cublas => ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11"],
        _ => throw new ArgumentOutOfRangeException(nameof(library), library, "unknown CUDA library"),
    };

    /// <summary>
    /// Every candidate, in the order it is tried: absolute paths, or bare sonames for the dynamic loader.
    /// Globbed folders contribute only folders that exist; fixed folders are always listed.
    /// </summary>
    public static IReadOnlyList<string> CandidatePaths(CudaLibrary library, LibrarySearchEnvironment environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var sonames = SonamesFor(library);
        var candidates = new List<string>();
        if (environment.OverrideDirectory is { } overrideDirectory)
            AddEach(candidates, [overrideDirectory], sonames);
        if (environment.SearchLoaderPath)
            candidates.AddRange(sonames);
        AddEach(candidates, ToolkitFolders(library, environment.FileSystemRoot), sonames);
        AddEach(candidates, PipFolders(environment), sonames);
        return candidates;
    }

    /// <summary>
    /// Loads <paramref name="library"/> for this process (once; later calls return the same handle or throw
    /// the same exception).
    /// </summary>
    /// <exception cref="CudaLibraryNotFoundException">No candidate loaded; the message lists each one and why.</exception>
    public static nint Load(CudaLibrary library) => Loaded[(int)library].Value;

    /// <summary>Whether <paramref name="library"/> can be loaded; <paramref name="error"/> says why not.</summary>
    public static bool TryLoad(CudaLibrary library, out string? error)
    {
        try
        {
            Load(library);
            error = null;
            return true;
        }
        catch (CudaLibraryNotFoundException e)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary>Searches with an explicit environment, uncached (the process-wide binding is unaffected).</summary>
    /// <exception cref="CudaLibraryNotFoundException">No candidate loaded.</exception>
    public static nint Load(CudaLibrary library, LibrarySearchEnvironment environment)
    {
        var attempts = new List<string>();
        foreach (var candidate in CandidatePaths(library, environment))
        {
            if (Path.IsPathRooted(candidate) && !File.Exists(candidate))
            {
                attempts.Add($"{candidate} (not found)");
                continue;
            }
            try
            {
                return NativeLibrary.Load(candidate);
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                attempts.Add($"{candidate} ({LoaderReason(e)})");
            }
        }
        throw new CudaLibraryNotFoundException(library, attempts);
    }

    // .NET wraps the loader's own reason (dlerror: "x.so: cannot open shared object file: …") in several lines of advice
    // about strace and LD_DEBUG; the reason is its last line, and an error message should be one line.
    static string LoaderReason(Exception e) =>
        e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? e.GetType().Name;

    private static nint ResolveImport(string name, Assembly assembly, DllImportSearchPath? searchPath) => name switch
    {
        LibraryNames.Driver => Load(CudaLibrary.Driver),
        LibraryNames.Nvrtc => Load(CudaLibrary.Nvrtc),
        LibraryNames.Cublas => Load(CudaLibrary.Cublas),
        _ => 0,
    };

    private static void AddEach(List<string> candidates, IEnumerable<string> folders, IReadOnlyList<string> sonames)
    {
        foreach (var folder in folders)
            foreach (var soname in sonames)
                candidates.Add(Path.Combine(folder, soname));
    }

    private static IEnumerable<string> ToolkitFolders(CudaLibrary library, string root)
    {
        yield return Path.Combine(root, "usr/local/cuda/lib64");
        foreach (var versioned in Glob(Path.Combine(root, "usr/local"), "cuda-*").OrderByDescending(ToolkitVersion))
            yield return Path.Combine(versioned, "lib64");
        yield return Path.Combine(root, "usr/lib/x86_64-linux-gnu");
        if (library == CudaLibrary.Driver)
            yield return Path.Combine(root, "usr/lib/wsl/lib");
    }

    private static Version ToolkitVersion(string folder) =>
        Version.TryParse(Path.GetFileName(folder)["cuda-".Length..], out var version) ? version : new Version(0, 0);

    private static IEnumerable<string> PipFolders(LibrarySearchEnvironment environment)
    {
        var sitePackages = new List<string>();
        foreach (var prefix in new[] { environment.VirtualEnv, environment.CondaPrefix })
            if (prefix is not null)
                sitePackages.AddRange(PythonPackageFolders(Path.Combine(prefix, "lib"), "site-packages"));
        if (environment.HomeDirectory is { } home)
            sitePackages.AddRange(PythonPackageFolders(Path.Combine(home, ".local/lib"), "site-packages"));
        sitePackages.AddRange(PythonPackageFolders(Path.Combine(environment.FileSystemRoot, "usr/local/lib"), "*-packages"));
        sitePackages.AddRange(PythonPackageFolders(Path.Combine(environment.FileSystemRoot, "usr/lib"), "*-packages"));
        foreach (var packages in sitePackages)
            foreach (var nvidiaPackage in Glob(Path.Combine(packages, "nvidia"), "*").Order(StringComparer.Ordinal))
                if (Directory.Exists(Path.Combine(nvidiaPackage, "lib")))
                    yield return Path.Combine(nvidiaPackage, "lib");
    }

    // lib/python3*/<packagesPattern>, newest Python first (python3.12 before python3.9).
    private static IEnumerable<string> PythonPackageFolders(string lib, string packagesPattern) =>
        Glob(lib, "python3*")
            .OrderByDescending(p => Version.TryParse(Path.GetFileName(p)["python".Length..], out var v) ? v : new Version(0, 0))
            .SelectMany(python => Glob(python, packagesPattern).Order(StringComparer.Ordinal));

    private static IEnumerable<string> Glob(string folder, string pattern)
    {
        try
        {
            return Directory.Exists(folder) ? Directory.GetDirectories(folder, pattern) : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return []; // an unreadable folder is simply not a place the library can be
        }
    }
}

/// <summary>No candidate file for a CUDA library could be loaded.</summary>
public sealed class CudaLibraryNotFoundException : DllNotFoundException
{
    /// <summary>Creates the exception with every path tried and why it failed.</summary>
    internal CudaLibraryNotFoundException(CudaLibrary library, IReadOnlyList<string> attempts)
        : base($"Could not load the CUDA {library} library ({string.Join(", ", NativeLibraryResolver.SonamesFor(library))}). " +
               $"Set {LibrarySearchEnvironment.OverrideVariable} to the folder that holds it. Tried, in order: " + string.Join("; ", attempts))
    {
        Library = library;
        Attempts = attempts;
    }

    /// <summary>The library that was searched for.</summary>
    internal CudaLibrary Library { get; }

    /// <summary>Each candidate tried, in order, with the reason it failed.</summary>
    public IReadOnlyList<string> Attempts { get; }
}
