using System.Runtime.InteropServices;
using E3.Interop.Native;

namespace E3.Interop.Driver;

/// <summary>
/// Raw driver API entry points (versioned <c>_v2</c> symbols where the header maps to them). None suppresses
/// the GC transition: every one of them can block (launch queue full, implicit synchronisation, JIT).
/// </summary>
internal static unsafe partial class DriverApi
{
    [LibraryImport(LibraryNames.Driver)] public static partial int cuInit(uint flags);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuDriverGetVersion(int* version);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuGetErrorName(int result, byte** name);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuGetErrorString(int result, byte** text);

    [LibraryImport(LibraryNames.Driver)] public static partial int cuDeviceGetCount(int* count);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuDeviceGet(int* device, int ordinal);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuDeviceGetAttribute(int* value, int attribute, int device);
    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuDeviceTotalMem_v2")] public static partial int cuDeviceTotalMem(nuint* bytes, int device);

    [LibraryImport(LibraryNames.Driver)] public static partial int cuDevicePrimaryCtxRetain(nint* context, int device);
    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuCtxSetCurrent(nint context);

    [LibraryImport(LibraryNames.Driver)] public static partial int cuModuleLoadDataEx(nint* module, void* image, uint optionCount, int* options, void** optionValues);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuModuleUnload(nint module);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuModuleGetFunction(nint* function, nint module, byte* name);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuFuncGetAttribute(int* value, int attribute, nint function);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuFuncSetAttribute(nint function, int attribute, int value);
    [LibraryImport(LibraryNames.Driver)]
    public static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedBytes, nint stream, void** parameters, void** extra);

    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuMemAlloc_v2")] public static partial int cuMemAlloc(ulong* pointer, nuint bytes);
    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuMemFree_v2")] public static partial int cuMemFree(ulong pointer);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuMemAllocAsync(ulong* pointer, nuint bytes, nint stream);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuMemFreeAsync(ulong pointer, nint stream);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuMemHostAlloc(void** pointer, nuint bytes, uint flags);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuMemFreeHost(void* pointer);
    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial int cuMemcpyHtoDAsync(ulong destination, void* source, nuint bytes, nint stream);
    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial int cuMemcpyDtoHAsync(void* destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial int cuMemcpyDtoDAsync(ulong destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuMemsetD8Async(ulong destination, byte value, nuint count, nint stream);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuMemsetD32Async(ulong destination, uint value, nuint count, nint stream);

    [LibraryImport(LibraryNames.Driver)] public static partial int cuStreamCreate(nint* stream, uint flags);
    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuStreamDestroy_v2")] public static partial int cuStreamDestroy(nint stream);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuStreamSynchronize(nint stream);

    [LibraryImport(LibraryNames.Driver)] public static partial int cuEventCreate(nint* gpuEvent, uint flags);
    [LibraryImport(LibraryNames.Driver, EntryPoint = "cuEventDestroy_v2")] public static partial int cuEventDestroy(nint gpuEvent);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuEventRecord(nint gpuEvent, nint stream);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuEventSynchronize(nint gpuEvent);
    [LibraryImport(LibraryNames.Driver)] public static partial int cuEventElapsedTime(float* milliseconds, nint start, nint end);
}

/// <summary>The driver enum values E3 uses (from cuda.h; stable across driver versions).</summary>
internal static class DriverConstants
{
    public const int AttributeMaxThreadsPerBlock = 1;
    public const int AttributeL2CacheSize = 38;
    public const int AttributeMultiprocessorCount = 16;
    public const int AttributeComputeCapabilityMajor = 75;
    public const int AttributeComputeCapabilityMinor = 76;
    public const int AttributeMaxSharedMemoryPerBlockOptIn = 97;

    public const int FunctionMaxThreadsPerBlock = 0;
    public const int FunctionSharedSizeBytes = 1;
    public const int FunctionLocalSizeBytes = 3;
    public const int FunctionNumRegs = 4;
    public const int FunctionMaxDynamicSharedSizeBytes = 8;

    public const int JitInfoLogBuffer = 3;
    public const int JitInfoLogBufferSizeBytes = 4;
    public const int JitErrorLogBuffer = 5;
    public const int JitErrorLogBufferSizeBytes = 6;
    public const int JitLogVerbose = 12;

    public const uint StreamNonBlocking = 1;
    public const uint EventDisableTiming = 2;
    public const uint MemHostAllocPortable = 1;
}
