using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace E3.Interop.Emulator;

/// <summary>
/// Finds and loads the emulator library once per process. <c>E3_EMU_LIB</c> (a full path) wins; otherwise the
/// file is looked for next to the application, then in <c>native/build</c> of any
/// directory above the application (a repository checkout).
/// </summary>
internal static class EmuLibrary
{
    /// <summary>File name of the product library (kernels of <c>kernels/</c>).</summary>
    public const string ProductFileName = "libe3emu.so";

    /// <summary>File name of the test library: the product kernels plus the emulator's semantics test kernels.</summary>
    public const string TestFileName = "libe3emu_tests.so";

    /// <summary>Environment variable naming the library to load, e.g. the AddressSanitizer build.</summary>
    public const string PathVariable = "E3_EMU_LIB";

    // The name the [LibraryImport]s use. No file has it, so default probing fails and ResolveImport supplies
    // the handle; that way no assembly-wide DllImportResolver is taken from other bindings in this assembly.
    internal const string ImportName = "e3emu-loaded-by-EmuLibrary";

    private static readonly Lock Gate = new();
    private static nint _handle;

    static EmuLibrary() => AssemblyLoadContext.Default.ResolvingUnmanagedDll += ResolveImport;

    /// <summary>Full path of the loaded library, or null before <see cref="Load"/>.</summary>
    public static string? LoadedPath { get; private set; }

    /// <summary>
    /// Loads <paramref name="fileName"/> (or the file <c>E3_EMU_LIB</c> names) unless a library is already loaded.
    /// Bindings are bound process-wide, so a later call asking for a different file fails, except that a request
    /// for the product library is served by an already loaded test library (a superset).
    /// </summary>
    public static string Load(string fileName = ProductFileName)
    {
        lock (Gate)
        {
            if (LoadedPath is not null && fileName == ProductFileName && Path.GetFileName(LoadedPath) == TestFileName)
                return LoadedPath; // the test library holds every product kernel too
            var path = Locate(fileName);
            if (LoadedPath is not null)
            {
                if (LoadedPath != path)
                    throw new InvalidOperationException($"emulator library {LoadedPath} is already loaded; cannot also load {path}");
                return LoadedPath;
            }
            _handle = NativeLibrary.Load(path);
            LoadedPath = path;
            return path;
        }
    }

    /// <summary>The path <see cref="Load"/> would use for <paramref name="fileName"/>.</summary>
    public static string Locate(string fileName)
    {
        var fromEnvironment = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrEmpty(fromEnvironment))
        {
            if (!File.Exists(fromEnvironment))
                throw new EmuLibraryNotFoundException($"{PathVariable}={fromEnvironment}: no such file");
            return Path.GetFullPath(fromEnvironment);
        }
        var searched = new List<string>();
        foreach (var candidate in Candidates(fileName))
        {
            searched.Add(candidate);
            if (File.Exists(candidate)) return Path.GetFullPath(candidate);
        }
        throw new EmuLibraryNotFoundException(
            $"{fileName} not found (build it with ./build.sh build or set {PathVariable}); searched: {string.Join(", ", searched)}");
    }

    private static IEnumerable<string> Candidates(string fileName)
    {
        yield return Path.Combine(AppContext.BaseDirectory, fileName);
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            yield return Path.Combine(dir.FullName, "native", "build", fileName);
    }

    private static nint ResolveImport(Assembly assembly, string name)
    {
        if (name != ImportName || assembly != typeof(EmuLibrary).Assembly) return 0;
        if (LoadedPath is null) Load();
        return _handle;
    }

    // Touching this before the first P/Invoke guarantees the static constructor has hooked the resolver.
    internal static void EnsureResolverHooked() { }
}
