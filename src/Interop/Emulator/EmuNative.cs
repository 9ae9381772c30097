using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace E3.Interop.Emulator;

/// <summary>
/// Raw bindings to the C ABI of libe3emu (native/include/e3emu/e3emu.h). Device pointers are
/// <see cref="ulong"/> like CUdeviceptr; module, function, stream and event handles are opaque <see cref="nint"/>.
/// Prefer <see cref="EmuDevice"/>, which checks every status and owns the handles.
/// </summary>
internal static unsafe partial class EmuNative
{
    private const string Lib = EmuLibrary.ImportName;

    static EmuNative() => EmuLibrary.EnsureResolverHooked();

    [LibraryImport(Lib, EntryPoint = "e3emu_init")]
    public static partial EmuResult Init(uint flags);

    [LibraryImport(Lib, EntryPoint = "e3emu_worker_count")]
    public static partial int WorkerCount();

    /// <summary>The order in which blocks run their threads (<c>E3EMU_THREAD_ORDER</c> at init).</summary>
    [LibraryImport(Lib, EntryPoint = "e3emu_thread_order_in_use")]
    public static partial EmuThreadOrder ThreadOrderInUse();

    [LibraryImport(Lib, EntryPoint = "e3emu_last_error")]
    private static partial nint LastErrorPointer();

    [LibraryImport(Lib, EntryPoint = "e3emu_error_name")]
    private static partial nint ErrorNamePointer(EmuResult code);

    /// <summary>Message of the last failed call on this thread.</summary>
    public static string LastError() => Marshal.PtrToStringUTF8(LastErrorPointer()) ?? "";

    /// <summary>CUresult-style name of a status code.</summary>
    public static string ErrorName(EmuResult code) => Marshal.PtrToStringUTF8(ErrorNamePointer(code)) ?? code.ToString();

    [LibraryImport(Lib, EntryPoint = "e3emu_module_load", StringMarshalling = StringMarshalling.Utf8)]
    public static partial EmuResult ModuleLoad(out nint module, string name);

    [LibraryImport(Lib, EntryPoint = "e3emu_module_unload")]
    public static partial EmuResult ModuleUnload(nint module);

    [LibraryImport(Lib, EntryPoint = "e3emu_module_get_function", StringMarshalling = StringMarshalling.Utf8)]
    public static partial EmuResult ModuleGetFunction(out nint function, nint module, string name);

    [LibraryImport(Lib, EntryPoint = "e3emu_function_param_count")]
    public static partial EmuResult FunctionParamCount(nint function, out int count);

    [LibraryImport(Lib, EntryPoint = "e3emu_launch")]
    public static partial EmuResult Launch(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY,
        uint blockZ, uint sharedBytes, nint stream, void** parameters);

    /// <summary>The checks <see cref="Launch"/> makes before running anything, alone (for a launch queued to run later).</summary>
    [LibraryImport(Lib, EntryPoint = "e3emu_launch_check")]
    public static partial EmuResult LaunchCheck(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY,
        uint blockZ, uint sharedBytes, void** parameters);

    /// <summary>Whether [pointer, pointer + bytes) lies inside one live allocation.</summary>
    [LibraryImport(Lib, EntryPoint = "e3emu_range_check")]
    public static partial EmuResult RangeCheck(ulong pointer, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "e3emu_mem_alloc")]
    public static partial EmuResult MemAlloc(out ulong pointer, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "e3emu_mem_free")]
    public static partial EmuResult MemFree(ulong pointer);

    [LibraryImport(Lib, EntryPoint = "e3emu_memcpy_htod")]
    public static partial EmuResult MemcpyHtoD(ulong destination, void* source, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "e3emu_memcpy_dtoh")]
    public static partial EmuResult MemcpyDtoH(void* destination, ulong source, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "e3emu_memcpy_dtod")]
    public static partial EmuResult MemcpyDtoD(ulong destination, ulong source, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "e3emu_memset_d8")]
    public static partial EmuResult MemsetD8(ulong destination, byte value, nuint count);

    [LibraryImport(Lib, EntryPoint = "e3emu_memset_d32")]
    public static partial EmuResult MemsetD32(ulong destination, uint value, nuint count);

    [LibraryImport(Lib, EntryPoint = "e3emu_stream_create")]
    public static partial EmuResult StreamCreate(out nint stream);

    [LibraryImport(Lib, EntryPoint = "e3emu_stream_destroy")]
    public static partial EmuResult StreamDestroy(nint stream);

    [LibraryImport(Lib, EntryPoint = "e3emu_stream_synchronize")]
    public static partial EmuResult StreamSynchronize(nint stream);

    [LibraryImport(Lib, EntryPoint = "e3emu_event_create")]
    public static partial EmuResult EventCreate(out nint @event);

    [LibraryImport(Lib, EntryPoint = "e3emu_event_destroy")]
    public static partial EmuResult EventDestroy(nint @event);

    [LibraryImport(Lib, EntryPoint = "e3emu_event_record")]
    public static partial EmuResult EventRecord(nint @event, nint stream);

    [LibraryImport(Lib, EntryPoint = "e3emu_event_synchronize")]
    public static partial EmuResult EventSynchronize(nint @event);

    [LibraryImport(Lib, EntryPoint = "e3emu_event_elapsed_time")]
    public static partial EmuResult EventElapsedTime(out float milliseconds, nint start, nint end);

    /// <summary>cublasGemmEx on the CPU (column-major; compute type 32F or 32F_FAST_TF32; see e3emu.h).</summary>
    [LibraryImport(Lib, EntryPoint = "e3emu_gemm_ex")]
    public static partial EmuResult GemmEx(EmuOperation transA, EmuOperation transB, int m, int n, int k, float alpha,
        void* a, EmuDataType aType, int lda, void* b, EmuDataType bType, int ldb, float beta, void* c,
        EmuDataType cType, int ldc, int compute);

    /// <summary>cublasGemmStridedBatchedEx on the CPU; strides in elements.</summary>
    [LibraryImport(Lib, EntryPoint = "e3emu_gemm_strided_batched_ex")]
    public static partial EmuResult GemmStridedBatchedEx(EmuOperation transA, EmuOperation transB, int m, int n, int k,
        float alpha, void* a, EmuDataType aType, int lda, long strideA, void* b, EmuDataType bType, int ldb,
        long strideB, float beta, void* c, EmuDataType cType, int ldc, long strideC, int batchCount, int compute);

    /// <summary>Throws <see cref="EmuException"/> with the emulator's message unless <paramref name="result"/> is success.</summary>
    public static void Check(EmuResult result, [CallerArgumentExpression(nameof(result))] string call = "")
    {
        if (result != EmuResult.Success) throw new EmuException(result, ErrorName(result), call, LastError());
    }
}
