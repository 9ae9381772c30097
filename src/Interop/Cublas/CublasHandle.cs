using E3.Interop.Gpu;
using E3.Interop.Native;

namespace E3.Interop.Cublas;

/// <summary>
/// A cuBLAS handle bound to the current context. GEMMs follow cuBLAS's column-major convention (see
/// <see cref="GemmDescriptor"/>; <see cref="RowMajorGemm"/> maps row-major linear layers onto it) and always
/// accumulate in fp32: CUBLAS_COMPUTE_32F whatever the bf16/fp16/fp32 operand types, or CUBLAS_COMPUTE_32F_FAST_TF32
/// for fp32 operands when the descriptor asks (<see cref="GemmCompute"/>).
/// </summary>
internal sealed unsafe class CublasHandle : IDisposable
{
    private const int DefaultAlgorithm = -1; // CUBLAS_GEMM_DEFAULT
    private nint handle;
    private nint boundStream;

    /// <summary>Creates a handle in the calling thread's current context.</summary>
    public CublasHandle()
    {
        NativeLibraryResolver.Load(CudaLibrary.Cublas);
        nint created;
        CublasException.Check(CublasApi.cublasCreate(&created), "cublasCreate_v2");
        handle = created;
    }

    /// <summary>The loaded cuBLAS library's version (needs no GPU or handle).</summary>
    /// <exception cref="E3.Interop.Native.CudaLibraryNotFoundException">cuBLAS is not installed.</exception>
    public static Version LibraryVersion
    {
        get
        {
            NativeLibraryResolver.Load(CudaLibrary.Cublas);
            int major, minor, patch; // libraryPropertyType: MAJOR_VERSION = 0, MINOR_VERSION = 1, PATCH_LEVEL = 2
            CublasException.Check(CublasApi.cublasGetProperty(0, &major), "cublasGetProperty(MAJOR_VERSION)");
            CublasException.Check(CublasApi.cublasGetProperty(1, &minor), "cublasGetProperty(MINOR_VERSION)");
            CublasException.Check(CublasApi.cublasGetProperty(2, &patch), "cublasGetProperty(PATCH_LEVEL)");
            return new Version(major, minor, patch);
        }
    }

    /// <summary>cuBLAS's version number, e.g. 120402 for 12.4.2.</summary>
    public int Version
    {
        get
        {
            int version;
            CublasException.Check(CublasApi.cublasGetVersion(Handle, &version), "cublasGetVersion_v2");
            return version;
        }
    }

    /// <summary>Queues later calls on <paramref name="stream"/> (no driver call when it is already bound).</summary>
    public void SetStream(GpuStream stream)
    {
        if (stream.Handle == boundStream)
            return;
        CublasException.Check(CublasApi.cublasSetStream(Handle, stream.Handle), "cublasSetStream_v2");
        boundStream = stream.Handle;
    }

    /// <summary>Gives cuBLAS a caller-owned workspace so that it never allocates during a (graph-captured) GEMM.</summary>
    public void SetWorkspace(DevicePtr workspace, long bytes) =>
        CublasException.Check(CublasApi.cublasSetWorkspace(Handle, workspace.Address, (nuint)bytes), "cublasSetWorkspace_v2");

    /// <summary>Queues <paramref name="gemm"/> on <paramref name="stream"/>: GemmEx, or GemmStridedBatchedEx when BatchCount &gt; 1.</summary>
    public void Gemm(in GemmDescriptor gemm, GpuStream stream)
    {
        gemm.Validate();
        SetStream(stream);
        float alpha = gemm.Alpha, beta = gemm.Beta;
        if (gemm.BatchCount == 1)
        {
            CublasException.Check(CublasApi.cublasGemmEx(Handle, (int)gemm.TransA, (int)gemm.TransB, gemm.M, gemm.N, gemm.K,
                &alpha, gemm.A.Pointer.Address, (int)gemm.A.Type, gemm.A.LeadingDimension,
                gemm.B.Pointer.Address, (int)gemm.B.Type, gemm.B.LeadingDimension,
                &beta, gemm.C.Pointer.Address, (int)gemm.C.Type, gemm.C.LeadingDimension, (int)gemm.Compute, DefaultAlgorithm), "cublasGemmEx");
            return;
        }
        CublasException.Check(CublasApi.cublasGemmStridedBatchedEx(Handle, (int)gemm.TransA, (int)gemm.TransB, gemm.M, gemm.N, gemm.K,
            &alpha, gemm.A.Pointer.Address, (int)gemm.A.Type, gemm.A.LeadingDimension, gemm.A.BatchStride,
            gemm.B.Pointer.Address, (int)gemm.B.Type, gemm.B.LeadingDimension, gemm.B.BatchStride,
            &beta, gemm.C.Pointer.Address, (int)gemm.C.Type, gemm.C.LeadingDimension, gemm.C.BatchStride,
            gemm.BatchCount, (int)gemm.Compute, DefaultAlgorithm), "cublasGemmStridedBatchedEx");
    }

    /// <summary>Destroys the handle; call with its context current.</summary>
    public void Dispose()
    {
        if (handle == 0)
            return;
        var h = handle;
        handle = 0;
        CublasApi.cublasDestroy(h);
    }

    private nint Handle => handle != 0 ? handle : throw new ObjectDisposedException(nameof(CublasHandle));
}
