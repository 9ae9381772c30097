namespace E3.Interop.Emulator;

/// <summary>Status codes of libe3emu; the values are those of CUDA's <c>CUresult</c> where one exists.</summary>
internal enum EmuResult
{
    Success = 0,
    InvalidValue = 1,
    OutOfMemory = 2,
    NotInitialized = 3,
    InvalidContext = 201,
    InvalidHandle = 400,
    NotFound = 500,
    NotReady = 600,
    LaunchOutOfResources = 701,
    LaunchFailed = 719,
    NotSupported = 801,
}

/// <summary>cudaDataType_t values accepted by the emulator's GEMM.</summary>
internal enum EmuDataType
{
    Float32 = 0,
    Float16 = 2,
    BFloat16 = 14,
}

/// <summary>cublasOperation_t values: use a matrix as stored (N) or transposed (T).</summary>
internal enum EmuOperation
{
    N = 0,
    T = 1,
}

/// <summary>
/// e3emu_thread_order: the order in which a block's threads run between blocking points. One order hides a thread
/// reading a lower thread's shared memory without a barrier, the other a higher one's (native/README.md).
/// </summary>
internal enum EmuThreadOrder
{
    Forward = 0,
    Reverse = 1,
}
