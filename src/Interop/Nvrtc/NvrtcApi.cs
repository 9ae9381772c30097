using System.Runtime.InteropServices;
using E3.Interop.Native;

namespace E3.Interop.Nvrtc;

/// <summary>Raw NVRTC entry points. Compilation takes milliseconds to seconds, so no call here suppresses the GC transition.</summary>
internal static unsafe partial class NvrtcApi
{
    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcVersion(int* major, int* minor);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetNumSupportedArchs(int* count);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetSupportedArchs(int* archs);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial nint nvrtcGetErrorString(int result);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcCreateProgram(nint* program, byte* source, byte* name, int headerCount, byte** headers, byte** includeNames);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcDestroyProgram(nint* program);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcCompileProgram(nint program, int optionCount, byte** options);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetProgramLogSize(nint program, nuint* size);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetProgramLog(nint program, byte* log);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetPTXSize(nint program, nuint* size);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetPTX(nint program, byte* ptx);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetCUBINSize(nint program, nuint* size);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetCUBIN(nint program, byte* cubin);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcAddNameExpression(nint program, byte* nameExpression);

    [LibraryImport(LibraryNames.Nvrtc)]
    public static partial int nvrtcGetLoweredName(nint program, byte* nameExpression, byte** loweredName);
}
