using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>Typed launches of kernels/residual.cu (grid-stride, 256 threads per block).</summary>
internal sealed class ResidualKernels : KernelFamily
{
    private readonly GpuFunction gatedF32, gatedBf16, backwardF32, addF32;

    /// <summary>Most blocks of the gated-residual backward: the floats of its partial sums, 2 per block, that the host adds.</summary>
    public const int MaxBackwardBlocks = 256;

    /// <summary>Blocks the backward uses for <paramref name="count"/> values: fixed by the count alone, so the reduction order is too.</summary>
    public static int BackwardBlocks(long count) => (int)Math.Clamp((count + LaunchShapes.BlockThreads - 1) / LaunchShapes.BlockThreads, 1, MaxBackwardBlocks);

    /// <summary>Loads residual.cu on <paramref name="device"/>.</summary>
    public ResidualKernels(IGpuDevice device) : base(device, "residual")
    {
        gatedF32 = Function("e3_gated_residual_f32");
        gatedBf16 = Function("e3_gated_residual_bf16");
        backwardF32 = Function("e3_gated_residual_backward_f32");
        addF32 = Function("e3_add_inplace_f32");
    }

    /// <summary>
    /// Backward of the gated residual: dLayer = gate·dOut, dh = (1 − gate)·dOut (dh may be dOut), and per block the
    /// double sum of dOut·(a + m − h) split into two floats in <paramref name="partials"/> [2 · <see cref="BackwardBlocks"/>]:
    /// the host adds them in block order in double.
    /// </summary>
    public void Backward(DevicePointer<float> h, DevicePointer<float> a, DevicePointer<float> m, DevicePointer<float> dOut, DevicePointer<float> dh,
        DevicePointer<float> dLayer, DevicePointer<float> partials, float gate, long count, GpuStream stream)
    {
        AtLeast(count, 1, nameof(count));
        var args = new KernelArgs();
        args.Add(h);
        args.Add(a);
        args.Add(m);
        args.Add(dOut);
        args.Add(dh);
        args.Add(dLayer);
        args.Add(partials);
        args.Add(gate);
        args.Add(count);
        Launch(backwardF32, new LaunchShape(new Dim3((uint)BackwardBlocks(count)), new Dim3(LaunchShapes.BlockThreads)), stream, args);
    }

    /// <summary>y += x over <paramref name="count"/> values.</summary>
    public void AddInPlace(DevicePointer<float> y, DevicePointer<float> x, long count, GpuStream stream)
    {
        AtLeast(count, 0, nameof(count));
        var args = new KernelArgs();
        args.Add(y);
        args.Add(x);
        args.Add(count);
        Launch(addF32, LaunchShapes.GridStride(count), stream, args);
    }

    /// <summary>h = gate == 1 ? a + m : h + gate * (a + m - h), over <paramref name="count"/> values.</summary>
    public void Gated(DevicePointer<float> h, DevicePointer<float> a, DevicePointer<float> m, float gate, long count, GpuStream stream) =>
        LaunchGated(gatedF32, h.Raw, a.Raw, m.Raw, gate, count, LaunchShapes.GridStride(count), stream);

    /// <summary>bf16 version: a + m is rounded to bf16 first, the blend computed in fp32 and rounded once.</summary>
    public void Gated(DevicePointer<Bf16> h, DevicePointer<Bf16> a, DevicePointer<Bf16> m, float gate, long count, GpuStream stream) =>
        LaunchGated(gatedBf16, h.Raw, a.Raw, m.Raw, gate, count, LaunchShapes.GridStrideVectors(count), stream);

    private void LaunchGated(GpuFunction function, DevicePtr h, DevicePtr a, DevicePtr m, float gate, long count, LaunchShape shape, GpuStream stream)
    {
        AtLeast(count, 0, nameof(count));
        var args = new KernelArgs();
        args.Add(h);
        args.Add(a);
        args.Add(m);
        args.Add(gate);
        args.Add(count);
        Launch(function, shape, stream, args);
    }
}
