namespace E3.Interop.Native;

/// <summary>The three native CUDA libraries E3 binds to.</summary>
internal enum CudaLibrary
{
    /// <summary>The driver API, libcuda.so.1 (installed with the NVIDIA driver, never with the toolkit).</summary>
    Driver,

    /// <summary>The runtime compiler, libnvrtc.</summary>
    Nvrtc,

    /// <summary>cuBLAS v2, libcublas.</summary>
    Cublas,
}

/// <summary>The logical names used in <c>LibraryImport</c>; the resolver maps them to real files.</summary>
internal static class LibraryNames
{
    public const string Driver = "e3-cuda-driver";
    public const string Nvrtc = "e3-cuda-nvrtc";
    public const string Cublas = "e3-cuda-cublas";
}
