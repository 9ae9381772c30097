using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>Typed launches of kernels/residual.cu (grid-stride, 256 threads per block).</summary>
public sealed class ResidualKernels : KernelFamily
{
    private readonly GpuFunction gatedF32, gatedBf16;

    /// <summary>Loads residual.cu on <paramref name="device"/>.</summary>
    public ResidualKernels(IGpuDevice device) : base(device, "residual")
    {
        gatedF32 = Function("e3_gated_residual_f32");
        gatedBf16 = Function("e3_gated_residual_bf16");
    }

    /// <summary>h = gate == 1 ? a + m : h + gate * (a + m - h), over <paramref name="count"/> values.</summary>
    public void Gated(DevicePointer<float> h, DevicePointer<float> a, DevicePointer<float> m, float gate, long count, GpuStream stream) =>
        LaunchGated(gatedF32, h.Raw, a.Raw, m.Raw, gate, count, stream);

    /// <summary>bf16 version: a + m is rounded to bf16 first, the blend computed in fp32 and rounded once.</summary>
    public void Gated(DevicePointer<Bf16> h, DevicePointer<Bf16> a, DevicePointer<Bf16> m, float gate, long count, GpuStream stream) =>
        LaunchGated(gatedBf16, h.Raw, a.Raw, m.Raw, gate, count, stream);

    private void LaunchGated(GpuFunction function, DevicePtr h, DevicePtr a, DevicePtr m, float gate, long count, GpuStream stream)
    {
        AtLeast(count, 0, nameof(count));
        var args = new KernelArgs();
        args.Add(h);
        args.Add(a);
        args.Add(m);
        args.Add(gate);
        args.Add(count);
        Launch(function, LaunchShapes.GridStride(count), stream, args);
    }
}
