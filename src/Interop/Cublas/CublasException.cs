namespace E3.Interop.Cublas;

/// <summary>A cuBLAS call failed; the message names the call and the <c>cublasStatus_t</c>.</summary>
public sealed class CublasException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> returning <paramref name="status"/>.</summary>
    public CublasException(string call, int status)
        : base($"{call} failed: {NameOf(status)}")
    {
        Call = call;
        Status = status;
        StatusName = NameOf(status);
    }

    /// <summary>The cuBLAS function that failed.</summary>
    public string Call { get; }

    /// <summary>The raw status.</summary>
    public int Status { get; }

    /// <summary>The status's enum name, e.g. <c>CUBLAS_STATUS_INVALID_VALUE</c>.</summary>
    public string StatusName { get; }

    /// <summary>The enum name of a <c>cublasStatus_t</c>.</summary>
    internal static string NameOf(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS",
        1 => "CUBLAS_STATUS_NOT_INITIALIZED",
        3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH",
        11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"CUBLAS_STATUS_{status}",
    };

    internal static void Check(int status, string call)
    {
        if (status != 0)
            throw new CublasException(call, status);
    }
}
