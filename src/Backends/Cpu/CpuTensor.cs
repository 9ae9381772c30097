using System.Runtime.InteropServices;

namespace E3.Backends.Cpu;

/// <summary>A tensor in 64-byte-aligned native host memory.</summary>
internal sealed unsafe class CpuTensor : Tensor
{
    void* _data;

    internal CpuTensor(DType dtype, int[] shape) : base(dtype, shape)
    {
        nuint bytes = (nuint)Math.Max(SizeInBytes, 1);
        _data = NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(_data, bytes);
    }

    public void* Data => IsDisposed ? throw new ObjectDisposedException(ToString()) : _data;
    public float* F32 => DType == DType.F32 ? (float*)Data : throw new InvalidOperationException($"{this} is not F32");
    public ushort* U16 => DType is DType.BF16 or DType.F16 ? (ushort*)Data : throw new InvalidOperationException($"{this} is not 16-bit");

    public Span<float> AsSpan() => new(F32, checked((int)ElementCount));

    protected override void Release()
    {
        NativeMemory.AlignedFree(_data);
        _data = null;
    }
}
