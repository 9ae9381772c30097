using System.Runtime.InteropServices;
using System.Text;
using E3.Interop.Native;

namespace E3.Interop.Nvrtc;

/// <summary>Process-wide facts about the loaded NVRTC library.</summary>
internal static unsafe class NvrtcCompiler
{
    private static readonly Lazy<Version> LoadedVersion = new(ReadVersion);
    private static readonly Lazy<IReadOnlyList<int>> LoadedArchs = new(ReadSupportedArchs);

    /// <summary>NVRTC's version, e.g. 11.8.</summary>
    /// <exception cref="CudaLibraryNotFoundException">NVRTC is not installed.</exception>
    public static Version Version => LoadedVersion.Value;

    /// <summary>
    /// The SM versions NVRTC can emit CUBIN for (e.g. 35, 37, ..., 90), ascending. NVRTC before 11.2 has no
    /// query; there the list is the conservative set known for that release.
    /// </summary>
    public static IReadOnlyList<int> SupportedArchitectures => LoadedArchs.Value;

    /// <summary>Whether NVRTC loads; <paramref name="error"/> says why not.</summary>
    public static bool IsAvailable(out string? error) => NativeLibraryResolver.TryLoad(CudaLibrary.Nvrtc, out error);

    internal static void Check(int result, string call)
    {
        if (result != 0)
            throw new NvrtcException(call, result, "");
    }

    internal static string ErrorString(int result)
    {
        var text = NvrtcApi.nvrtcGetErrorString(result);
        return text == 0 ? NvrtcException.NameOf(result) : Marshal.PtrToStringUTF8(text) ?? "";
    }

    private static Version ReadVersion()
    {
        NativeLibraryResolver.Load(CudaLibrary.Nvrtc);
        int major, minor;
        Check(NvrtcApi.nvrtcVersion(&major, &minor), "nvrtcVersion");
        return new Version(major, minor);
    }

    private static IReadOnlyList<int> ReadSupportedArchs()
    {
        var handle = NativeLibraryResolver.Load(CudaLibrary.Nvrtc);
        if (!NativeLibrary.TryGetExport(handle, "nvrtcGetSupportedArchs", out _))
            return [35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80];
        int count;
        Check(NvrtcApi.nvrtcGetNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
        var archs = new int[count];
        fixed (int* p = archs)
            Check(NvrtcApi.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        Array.Sort(archs);
        return archs;
    }

    /// <summary>A NUL-terminated UTF-8 copy of <paramref name="text"/> (compile-time path only).</summary>
    internal static byte[] Utf8z(string text)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(text) + 1];
        Encoding.UTF8.GetBytes(text, bytes);
        return bytes;
    }
}
