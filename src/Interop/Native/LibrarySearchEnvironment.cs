namespace E3.Interop.Native;

/// <summary>
/// The environment the library search depends on, captured once so that the search order can be computed
/// (and tested) without touching the process environment.
/// </summary>
/// <param name="OverrideDirectory"><c>E3_CUDA_LIB_DIR</c>: tried before anything else.</param>
/// <param name="HomeDirectory">The user's home, for <c>~/.local/lib/python3*/site-packages</c>.</param>
/// <param name="VirtualEnv"><c>$VIRTUAL_ENV</c>.</param>
/// <param name="CondaPrefix"><c>$CONDA_PREFIX</c>.</param>
/// <param name="FileSystemRoot">Prefix for the absolute system folders (<c>/</c> normally; a temp folder in tests).</param>
/// <param name="SearchLoaderPath">Whether bare sonames are handed to the dynamic loader (LD_LIBRARY_PATH,
/// ld.so.cache); false confines the search to the listed folders, which makes it reproducible on any machine.</param>
internal sealed record LibrarySearchEnvironment(
    string? OverrideDirectory,
    string? HomeDirectory,
    string? VirtualEnv,
    string? CondaPrefix,
    string FileSystemRoot = "/",
    bool SearchLoaderPath = true)
{
    /// <summary>The environment variable that names a folder searched before every other location.</summary>
    public const string OverrideVariable = "E3_CUDA_LIB_DIR";

    /// <summary>Reads the current process environment.</summary>
    public static LibrarySearchEnvironment FromProcess() => new(
        Empty(Environment.GetEnvironmentVariable(OverrideVariable)),
        Empty(Environment.GetEnvironmentVariable("HOME")) ?? Empty(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile)),
        Empty(Environment.GetEnvironmentVariable("VIRTUAL_ENV")),
        Empty(Environment.GetEnvironmentVariable("CONDA_PREFIX")));

    private static string? Empty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;
}
