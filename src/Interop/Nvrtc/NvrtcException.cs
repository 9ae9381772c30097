namespace E3.Interop.Nvrtc;

/// <summary>An NVRTC call failed. For a compile error the message ends with the compiler log (file:line: error ...).</summary>
public sealed class NvrtcException : Exception
{
    /// <summary>Creates the exception from the failing call, its nvrtcResult and the program log (may be empty).</summary>
    public NvrtcException(string call, int result, string log)
        : base(Describe(call, result, log))
    {
        Call = call;
        Result = result;
        ResultName = NameOf(result);
        Log = log;
    }

    /// <summary>The NVRTC function that failed.</summary>
    public string Call { get; }

    /// <summary>The raw nvrtcResult.</summary>
    public int Result { get; }

    /// <summary>The nvrtcResult's enum name, e.g. <c>NVRTC_ERROR_COMPILATION</c>.</summary>
    public string ResultName { get; }

    /// <summary>The program log: warnings and errors with source file and line.</summary>
    public string Log { get; }

    /// <summary>The enum name of an nvrtcResult (stable across NVRTC 11 to 13).</summary>
    internal static string NameOf(int result) => result switch
    {
        0 => "NVRTC_SUCCESS",
        1 => "NVRTC_ERROR_OUT_OF_MEMORY",
        2 => "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
        3 => "NVRTC_ERROR_INVALID_INPUT",
        4 => "NVRTC_ERROR_INVALID_PROGRAM",
        5 => "NVRTC_ERROR_INVALID_OPTION",
        6 => "NVRTC_ERROR_COMPILATION",
        7 => "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
        8 => "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION",
        9 => "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
        10 => "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID",
        11 => "NVRTC_ERROR_INTERNAL_ERROR",
        12 => "NVRTC_ERROR_TIME_FILE_WRITE_FAILED",
        _ => $"NVRTC_ERROR_{result}",
    };

    private static string Describe(string call, int result, string log)
    {
        var message = $"{call} failed: {NameOf(result)}";
        return string.IsNullOrWhiteSpace(log) ? message : $"{message}:{Environment.NewLine}{log.TrimEnd()}";
    }
}
