using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>Typed launches of kernels/swiglu.cu (grid-stride, 256 threads per block).</summary>
internal sealed class SwiGluKernels : KernelFamily
{
    private readonly GpuFunction forwardF32, forwardBf16, backwardF32;

    /// <summary>Loads swiglu.cu on <paramref name="device"/>.</summary>
    public SwiGluKernels(IGpuDevice device) : base(device, "swiglu")
    {
        forwardF32 = Function("e3_swiglu_f32");
        forwardBf16 = Function("e3_swiglu_bf16");
        backwardF32 = Function("e3_swiglu_backward_f32");
    }

    /// <summary>y = silu(gate) * up over <paramref name="count"/> values; y may alias gate or up.</summary>
    public void Forward(DevicePointer<float> gate, DevicePointer<float> up, DevicePointer<float> y, long count, GpuStream stream) =>
        LaunchForward(forwardF32, gate.Raw, up.Raw, y.Raw, count, LaunchShapes.GridStride(count), stream);

    /// <summary>bf16 version; silu(gate) is rounded to bf16 before the product, as torch does.</summary>
    public void Forward(DevicePointer<Bf16> gate, DevicePointer<Bf16> up, DevicePointer<Bf16> y, long count, GpuStream stream) =>
        LaunchForward(forwardBf16, gate.Raw, up.Raw, y.Raw, count, LaunchShapes.GridStrideVectors(count), stream);

    /// <summary>dgate and dup of y = silu(gate) * up.</summary>
    public void Backward(DevicePointer<float> gate, DevicePointer<float> up, DevicePointer<float> dy, DevicePointer<float> dgate, DevicePointer<float> dup,
        long count, GpuStream stream)
    {
        AtLeast(count, 0, nameof(count));
        var args = new KernelArgs();
        args.Add(gate);
        args.Add(up);
        args.Add(dy);
        args.Add(dgate);
        args.Add(dup);
        args.Add(count);
        Launch(backwardF32, LaunchShapes.GridStride(count), stream, args);
    }

    private void LaunchForward(GpuFunction function, DevicePtr gate, DevicePtr up, DevicePtr y, long count, LaunchShape shape, GpuStream stream)
    {
        AtLeast(count, 0, nameof(count));
        var args = new KernelArgs();
        args.Add(gate);
        args.Add(up);
        args.Add(y);
        args.Add(count);
        Launch(function, shape, stream, args);
    }
}
