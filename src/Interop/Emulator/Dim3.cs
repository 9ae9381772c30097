namespace E3.Interop.Emulator;

/// <summary>Grid or block extent of a launch, like CUDA's dim3.</summary>
internal readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    public static implicit operator Dim3(uint x) => new(x);
}
