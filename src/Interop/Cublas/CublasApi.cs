using System.Runtime.InteropServices;
using E3.Interop.Native;

namespace E3.Interop.Cublas;

/// <summary>Raw cuBLAS v2 entry points (no GC-transition suppression: GEMM calls can block on the launch queue).</summary>
internal static unsafe partial class CublasApi
{
    [LibraryImport(LibraryNames.Cublas, EntryPoint = "cublasCreate_v2")] public static partial int cublasCreate(nint* handle);
    [LibraryImport(LibraryNames.Cublas, EntryPoint = "cublasDestroy_v2")] public static partial int cublasDestroy(nint handle);
    [LibraryImport(LibraryNames.Cublas, EntryPoint = "cublasGetVersion_v2")] public static partial int cublasGetVersion(nint handle, int* version);
    [LibraryImport(LibraryNames.Cublas, EntryPoint = "cublasSetStream_v2")] public static partial int cublasSetStream(nint handle, nint stream);
    [LibraryImport(LibraryNames.Cublas, EntryPoint = "cublasSetWorkspace_v2")] public static partial int cublasSetWorkspace(nint handle, ulong workspace, nuint bytes);

    [LibraryImport(LibraryNames.Cublas)] public static partial int cublasGetProperty(int property, int* value);

    [LibraryImport(LibraryNames.Cublas)]
    public static partial int cublasGemmEx(nint handle, int transa, int transb, int m, int n, int k,
        float* alpha, ulong a, int aType, int lda, ulong b, int bType, int ldb,
        float* beta, ulong c, int cType, int ldc, int computeType, int algorithm);

    [LibraryImport(LibraryNames.Cublas)]
    public static partial int cublasGemmStridedBatchedEx(nint handle, int transa, int transb, int m, int n, int k,
        float* alpha, ulong a, int aType, int lda, long strideA, ulong b, int bType, int ldb, long strideB,
        float* beta, ulong c, int cType, int ldc, long strideC, int batchCount, int computeType, int algorithm);
}
