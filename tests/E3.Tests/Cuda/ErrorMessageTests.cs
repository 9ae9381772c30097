using E3.Interop.Cublas;
using E3.Interop.Driver;
using E3.Interop.Nvrtc;
using Xunit;

namespace E3.Tests.Cuda;

/// <summary>The error texts a user sees name the call, the enum value and the detail, in one line they can search for.</summary>
public sealed class ErrorMessageTests
{
    [Fact]
    public void CudaExceptionReadsCallResultDescriptionAndLog()
    {
        var error = new CudaException("cuModuleLoadDataEx", 218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed", "ptxas fatal   : Unresolved extern function 'f'\n");
        Assert.Equal("cuModuleLoadDataEx failed: CUDA_ERROR_INVALID_PTX (a PTX JIT compilation failed): ptxas fatal   : Unresolved extern function 'f'", error.Message);
        Assert.Equal(218, error.Result);
        Assert.Equal("cuModuleLoadDataEx failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)",
            new CudaException("cuModuleLoadDataEx", 2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory", "  ").Message);
    }

    [Fact]
    public void CublasAndNvrtcNamesComeFromTheirEnums()
    {
        Assert.Equal("cublasGemmEx failed: CUBLAS_STATUS_INVALID_VALUE", new CublasException("cublasGemmEx", 7).Message);
        Assert.Equal("CUBLAS_STATUS_99", CublasException.NameOf(99));
        Assert.Equal("NVRTC_ERROR_INVALID_OPTION", NvrtcException.NameOf(5));
        var nvrtc = new NvrtcException("nvrtcCompileProgram(a.cu, -arch=sm_90)", 6, "a.cu(3): error: expected a \";\"\n");
        Assert.Equal($"nvrtcCompileProgram(a.cu, -arch=sm_90) failed: NVRTC_ERROR_COMPILATION:{Environment.NewLine}a.cu(3): error: expected a \";\"", nvrtc.Message);
    }
}
