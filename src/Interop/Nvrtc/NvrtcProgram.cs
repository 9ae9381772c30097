using System.Runtime.InteropServices;
using E3.Interop.Native;

namespace E3.Interop.Nvrtc;

/// <summary>One NVRTC program: a source file plus named headers, compiled once. Owns the nvrtcProgram handle.</summary>
internal sealed unsafe class NvrtcProgram : IDisposable
{
    private nint handle;

    /// <summary>Creates a program from <paramref name="source"/>, shown as <paramref name="fileName"/> in diagnostics.</summary>
    /// <param name="source">CUDA C++ source text.</param>
    /// <param name="fileName">Name used in NVRTC's messages (<c>file(line): error ...</c>).</param>
    /// <param name="headers">Headers by the name used in <c>#include "name"</c>.</param>
    /// <exception cref="NvrtcException">NVRTC rejected the program.</exception>
    public NvrtcProgram(string source, string fileName, IReadOnlyDictionary<string, string>? headers = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentException.ThrowIfNullOrEmpty(fileName);
        NativeLibraryResolver.Load(CudaLibrary.Nvrtc);
        var names = headers?.Keys.ToArray() ?? [];
        var texts = names.Select(n => headers![n]).ToArray();
        var sourceBytes = NvrtcCompiler.Utf8z(source);
        var nameBytes = NvrtcCompiler.Utf8z(fileName);
        using var headerTexts = new Utf8StringArray(texts);
        using var headerNames = new Utf8StringArray(names);
        nint created;
        fixed (byte* s = sourceBytes, n = nameBytes)
            NvrtcCompiler.Check(NvrtcApi.nvrtcCreateProgram(&created, s, n, names.Length, headerTexts.Pointers, headerNames.Pointers), "nvrtcCreateProgram");
        handle = created;
        FileName = fileName;
    }

    /// <summary>The name diagnostics use for the main source.</summary>
    public string FileName { get; }

    /// <summary>Registers a name expression (e.g. <c>"&amp;kernel&lt;float&gt;"</c>) whose mangled name is wanted after compiling.</summary>
    public void AddNameExpression(string expression)
    {
        var bytes = NvrtcCompiler.Utf8z(expression);
        fixed (byte* e = bytes)
            NvrtcCompiler.Check(NvrtcApi.nvrtcAddNameExpression(Handle, e), "nvrtcAddNameExpression");
    }

    /// <summary>
    /// Compiles with <paramref name="options"/>. On failure throws <see cref="NvrtcException"/> whose message
    /// carries the full program log; on success the log (warnings, ptxas report) is in <see cref="GetLog"/>.
    /// </summary>
    public void Compile(IReadOnlyList<string> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var native = new Utf8StringArray(options);
        int result = NvrtcApi.nvrtcCompileProgram(Handle, options.Count, native.Pointers);
        if (result != 0)
            throw new NvrtcException($"nvrtcCompileProgram({FileName}, {string.Join(' ', options)})", result, GetLog());
    }

    /// <summary>The compiler log (may be empty).</summary>
    public string GetLog()
    {
        nuint size;
        NvrtcCompiler.Check(NvrtcApi.nvrtcGetProgramLogSize(Handle, &size), "nvrtcGetProgramLogSize");
        var buffer = new byte[size];
        fixed (byte* b = buffer)
            NvrtcCompiler.Check(NvrtcApi.nvrtcGetProgramLog(Handle, b), "nvrtcGetProgramLog");
        return TrimNul(buffer);
    }

    /// <summary>The PTX text (always available after a successful compile).</summary>
    public string GetPtx()
    {
        nuint size;
        NvrtcCompiler.Check(NvrtcApi.nvrtcGetPTXSize(Handle, &size), "nvrtcGetPTXSize");
        var buffer = new byte[size];
        fixed (byte* b = buffer)
            NvrtcCompiler.Check(NvrtcApi.nvrtcGetPTX(Handle, b), "nvrtcGetPTX");
        return TrimNul(buffer);
    }

    /// <summary>The CUBIN image; only produced when compiled with a real <c>-arch=sm_XX</c>.</summary>
    public byte[] GetCubin()
    {
        nuint size;
        NvrtcCompiler.Check(NvrtcApi.nvrtcGetCUBINSize(Handle, &size), "nvrtcGetCUBINSize");
        if (size == 0)
            throw new NvrtcException("nvrtcGetCUBIN", 3, "no CUBIN: the program was compiled for a virtual architecture (compute_XX)");
        var buffer = new byte[size];
        fixed (byte* b = buffer)
            NvrtcCompiler.Check(NvrtcApi.nvrtcGetCUBIN(Handle, b), "nvrtcGetCUBIN");
        return buffer;
    }

    /// <summary>The mangled name of an expression added with <see cref="AddNameExpression"/>.</summary>
    public string GetLoweredName(string expression)
    {
        var bytes = NvrtcCompiler.Utf8z(expression);
        byte* lowered;
        fixed (byte* e = bytes)
            NvrtcCompiler.Check(NvrtcApi.nvrtcGetLoweredName(Handle, e, &lowered), "nvrtcGetLoweredName");
        return Marshal.PtrToStringUTF8((nint)lowered) ?? "";
    }

    /// <summary>Destroys the program.</summary>
    public void Dispose()
    {
        if (handle == 0)
            return;
        var h = handle;
        handle = 0;
        NvrtcApi.nvrtcDestroyProgram(&h);
    }

    private nint Handle => handle != 0 ? handle : throw new ObjectDisposedException(nameof(NvrtcProgram));

    private static string TrimNul(byte[] buffer)
    {
        int length = Array.IndexOf(buffer, (byte)0);
        return System.Text.Encoding.UTF8.GetString(buffer, 0, length < 0 ? buffer.Length : length);
    }
}
