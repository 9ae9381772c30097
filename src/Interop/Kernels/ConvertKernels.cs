using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>Typed launches of kernels/convert.cu: fp32 ⇄ bf16 on the device (grid-stride, 256 threads per block).</summary>
internal sealed class ConvertKernels : KernelFamily
{
    private readonly GpuFunction widen, narrow;

    /// <summary>Loads convert.cu on <paramref name="device"/>.</summary>
    public ConvertKernels(IGpuDevice device) : base(device, "convert")
    {
        widen = Function("e3_convert_bf16_to_f32");
        narrow = Function("e3_convert_f32_to_bf16");
    }

    /// <summary>dst = src widened to fp32 (exact), <paramref name="count"/> values.</summary>
    public void ToF32(DevicePointer<Bf16> src, DevicePointer<float> dst, long count, GpuStream stream) => Launch(widen, src.Raw, dst.Raw, count, stream);

    /// <summary>dst = src rounded to bf16 (nearest, ties to even; NaN stays NaN), <paramref name="count"/> values.</summary>
    public void ToBf16(DevicePointer<float> src, DevicePointer<Bf16> dst, long count, GpuStream stream) => Launch(narrow, src.Raw, dst.Raw, count, stream);

    private void Launch(GpuFunction function, DevicePtr src, DevicePtr dst, long count, GpuStream stream)
    {
        AtLeast(count, 0, nameof(count));
        var args = new KernelArgs();
        args.Add(src);
        args.Add(dst);
        args.Add(count);
        Launch(function, LaunchShapes.GridStrideVectors(count), stream, args);
    }
}
