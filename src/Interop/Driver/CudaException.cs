using System.Runtime.InteropServices;

namespace E3.Interop.Driver;

/// <summary>
/// A driver API call failed. The message reads
/// <c>cuModuleLoadDataEx failed: CUDA_ERROR_INVALID_PTX (a PTX JIT compilation failed): &lt;jit log&gt;</c>.
/// </summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates the exception; <paramref name="detail"/> (e.g. a JIT log) is appended when present.</summary>
    public CudaException(string call, int result, string resultName, string description, string? detail = null)
        : base($"{call} failed: {resultName} ({description})" + (string.IsNullOrWhiteSpace(detail) ? "" : $": {detail.TrimEnd()}"))
    {
        Call = call;
        Result = result;
        ResultName = resultName;
        Description = description;
    }

    /// <summary>The driver function that failed.</summary>
    public string Call { get; }

    /// <summary>The raw CUresult.</summary>
    public int Result { get; }

    /// <summary>The CUresult's name, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string ResultName { get; }

    /// <summary>The driver's description of the result.</summary>
    public string Description { get; }

    /// <summary>Throws for a non-zero <paramref name="result"/>, asking the driver for its name and description.</summary>
    internal static unsafe void Check(int result, string call, string? detail = null)
    {
        if (result == 0)
            return;
        byte* name = null, text = null;
        var resultName = DriverApi.cuGetErrorName(result, &name) == 0 && name != null ? Marshal.PtrToStringUTF8((nint)name)! : $"CUresult {result}";
        var description = DriverApi.cuGetErrorString(result, &text) == 0 && text != null ? Marshal.PtrToStringUTF8((nint)text)! : "unknown error";
        throw new CudaException(call, result, resultName, description, detail);
    }
}
