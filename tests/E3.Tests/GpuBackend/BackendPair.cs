using E3.Backends;
using E3.Backends.Cpu;
using E3.Interop.Gpu;

namespace E3.Tests.GpuBackend;

/// <summary>The same values on the CPU backend (fp32, the reference) and on a GpuBackend over the emulator.</summary>
internal sealed class BackendPair : IDisposable
{
    readonly List<Tensor> _tensors = [];

    public BackendPair(IGpuDevice device, DType activations)
    {
        Gpu = new E3.Backends.Gpu.GpuBackend(device, activations, ownsDevice: false);
    }

    public CpuBackend Cpu { get; } = new(threads: 1);
    public E3.Backends.Gpu.GpuBackend Gpu { get; }
    public DType Activations => Gpu.ActivationType;

    /// <summary>An activation tensor on both backends; bf16 activations see the values rounded, so does the CPU copy.</summary>
    public (Tensor Cpu, Tensor Gpu) Activation(float[] values, params int[] shape)
    {
        var host = Activations == DType.BF16 ? Approx.RoundBf16(values) : values;
        var c = Track(Cpu.Allocate(DType.F32, shape));
        Cpu.Upload(host, c);
        var g = Track(Gpu.Allocate(Activations, shape));
        Gpu.Upload(host, g);
        return (c, g);
    }

    /// <summary>A weight uploaded from raw fp32 bytes as <paramref name="storeAs"/> on both (the CPU keeps bf16 as bf16 too).</summary>
    public (Tensor Cpu, Tensor Gpu) Weight(float[] values, DType storeAs, params int[] shape)
    {
        var raw = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan());
        // Norm weights and biases are kept F32 by the CPU backend's F32-only kernels; matrices may be bf16 there too.
        var cpuStore = shape.Length >= 2 ? storeAs : DType.F32;
        var cpuValues = storeAs == DType.BF16 ? Approx.RoundBf16(values) : values;
        var c = Track(Cpu.Upload(System.Runtime.InteropServices.MemoryMarshal.AsBytes(cpuValues.AsSpan()), DType.F32, shape, cpuStore));
        return (c, Track(Gpu.Upload(raw, DType.F32, shape, storeAs)));
    }

    public (Tensor Cpu, Tensor Gpu) Zeros(params int[] shape) => (Track(Cpu.Allocate(DType.F32, shape)), Track(Gpu.Allocate(Activations, shape)));

    public float[] Read(IBackend backend, Tensor t)
    {
        var values = new float[t.ElementCount];
        backend.Download(t, values);
        return values;
    }

    public (float[] Cpu, float[] Gpu) Read((Tensor Cpu, Tensor Gpu) t) => (Read(Cpu, t.Cpu), Read(Gpu, t.Gpu));

    Tensor Track(Tensor t)
    {
        _tensors.Add(t);
        return t;
    }

    public void Dispose()
    {
        foreach (var t in _tensors) t.Dispose();
        Gpu.Dispose();
        Cpu.Dispose();
    }
}
