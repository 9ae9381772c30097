namespace E3.Interop.Emulator;

/// <summary>A libe3emu call failed; carries the CUresult-style code, its name and the emulator's message.</summary>
public sealed class EmuException : Exception
{
    internal EmuException(EmuResult result, string errorName, string call, string detail)
        : base($"{call} failed with {errorName}: {detail}")
    {
        Result = result;
        ErrorName = errorName;
        Detail = detail;
    }

    /// <summary>The status code returned by the emulator.</summary>
    internal EmuResult Result { get; }

    /// <summary>The CUresult name of <see cref="Result"/>, e.g. CUDA_ERROR_LAUNCH_FAILED.</summary>
    public string ErrorName { get; }

    /// <summary>The emulator's own description (kernel, block, thread for launch failures).</summary>
    public string Detail { get; }
}

/// <summary>No emulator library was found where <see cref="EmuLibrary"/> looks for one.</summary>
internal sealed class EmuLibraryNotFoundException(string message) : Exception(message);
