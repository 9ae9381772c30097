using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>Typed launches of kernels/rmsnorm.cu (one block of 256 threads per row).</summary>
internal sealed class RmsNormKernels : KernelFamily
{
    private readonly GpuFunction forwardF32, forwardBf16, fusedF32, fusedBf16, addF32, addBf16, backwardF32, backwardRowsF32;

    /// <summary>Loads rmsnorm.cu on <paramref name="device"/>.</summary>
    public RmsNormKernels(IGpuDevice device) : base(device, "rmsnorm")
    {
        forwardF32 = Function("e3_rmsnorm_f32");
        forwardBf16 = Function("e3_rmsnorm_bf16");
        fusedF32 = Function("e3_gated_residual_rmsnorm_f32");
        fusedBf16 = Function("e3_gated_residual_rmsnorm_bf16");
        addF32 = Function("e3_add_rmsnorm_f32");
        addBf16 = Function("e3_add_rmsnorm_bf16");
        backwardF32 = Function("e3_rmsnorm_backward_f32");
        backwardRowsF32 = Function("e3_rmsnorm_backward_rows_f32");
    }

    /// <summary>y[r,:] = w * x[r,:] * rsqrt(mean(x[r,:]^2) + eps) for r &lt; rows.</summary>
    public void Forward(DevicePointer<float> x, DevicePointer<float> weight, DevicePointer<float> y, int rows, int cols, float eps, GpuStream stream) =>
        LaunchForward(forwardF32, x.Raw, weight.Raw, y.Raw, rows, cols, eps, stream);

    /// <summary>bf16 rows and weight; sums in fp32, rounding as the Hugging Face module does.</summary>
    public void Forward(DevicePointer<Bf16> x, DevicePointer<Bf16> weight, DevicePointer<Bf16> y, int rows, int cols, float eps, GpuStream stream) =>
        LaunchForward(forwardBf16, x.Raw, weight.Raw, y.Raw, rows, cols, eps, stream);

    /// <summary>
    /// h = h + gate * ((a + m) - h), exactly as <see cref="ResidualKernels.Gated(DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, float, long, GpuStream)"/>
    /// computes it, then y = rmsnorm(h) * w: a decoder layer's end fused with the next kept layer's input norm. Equal bit
    /// for bit to those two kernels run one after the other. <paramref name="h"/> may be <paramref name="a"/> or <paramref name="m"/>.
    /// </summary>
    public void GatedResidualForward(DevicePointer<float> h, DevicePointer<float> a, DevicePointer<float> m, float gate, DevicePointer<float> weight,
        DevicePointer<float> y, int rows, int cols, float eps, GpuStream stream) =>
        LaunchGated(fusedF32, h.Raw, a.Raw, m.Raw, gate, weight.Raw, y.Raw, rows, cols, eps, stream);

    /// <summary>bf16 version of <see cref="GatedResidualForward(DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, float, DevicePointer{float}, DevicePointer{float}, int, int, float, GpuStream)"/>.</summary>
    public void GatedResidualForward(DevicePointer<Bf16> h, DevicePointer<Bf16> a, DevicePointer<Bf16> m, float gate, DevicePointer<Bf16> weight,
        DevicePointer<Bf16> y, int rows, int cols, float eps, GpuStream stream) =>
        LaunchGated(fusedBf16, h.Raw, a.Raw, m.Raw, gate, weight.Raw, y.Raw, rows, cols, eps, stream);

    /// <summary>sum = x + delta, then y = rmsnorm(sum) * w; <paramref name="sum"/> may be <paramref name="x"/>.</summary>
    public void AddForward(DevicePointer<float> x, DevicePointer<float> delta, DevicePointer<float> sum, DevicePointer<float> weight, DevicePointer<float> y,
        int rows, int cols, float eps, GpuStream stream) =>
        LaunchAdd(addF32, x.Raw, delta.Raw, sum.Raw, weight.Raw, y.Raw, rows, cols, eps, stream);

    /// <summary>bf16 version: the sum is rounded to bf16 before it is stored and normalised.</summary>
    public void AddForward(DevicePointer<Bf16> x, DevicePointer<Bf16> delta, DevicePointer<Bf16> sum, DevicePointer<Bf16> weight, DevicePointer<Bf16> y,
        int rows, int cols, float eps, GpuStream stream) =>
        LaunchAdd(addBf16, x.Raw, delta.Raw, sum.Raw, weight.Raw, y.Raw, rows, cols, eps, stream);

    /// <summary>dx for every row and dweight accumulated over rows; <paramref name="dweight"/> must be zeroed first.</summary>
    public void Backward(DevicePointer<float> x, DevicePointer<float> weight, DevicePointer<float> dy, DevicePointer<float> dx, DevicePointer<float> dweight,
        int rows, int cols, float eps, GpuStream stream) =>
        LaunchBackward(backwardF32, x, weight, dy, dx, dweight, rows, cols, eps, accumulate: null, stream);

    /// <summary>
    /// Deterministic backward: dx overwritten (or added to when <paramref name="accumulate"/>), and, unless
    /// <paramref name="dyXHat"/> is null, each row's weight-gradient terms dy·x̂ written to it [rows, cols] for
    /// <see cref="RowKernels.ColumnSum"/>.
    /// </summary>
    public void BackwardRows(DevicePointer<float> x, DevicePointer<float> weight, DevicePointer<float> dy, DevicePointer<float> dx, DevicePointer<float> dyXHat,
        int rows, int cols, float eps, bool accumulate, GpuStream stream) =>
        LaunchBackward(backwardRowsF32, x, weight, dy, dx, dyXHat, rows, cols, eps, accumulate ? 1 : 0, stream);

    // The two backward kernels share their parameters; the deterministic one adds the accumulate flag at the end.
    private void LaunchBackward(GpuFunction function, DevicePointer<float> x, DevicePointer<float> weight, DevicePointer<float> dy, DevicePointer<float> dx,
        DevicePointer<float> weightTerms, int rows, int cols, float eps, int? accumulate, GpuStream stream)
    {
        Validate(rows, cols);
        var args = new KernelArgs();
        args.Add(x);
        args.Add(weight);
        args.Add(dy);
        args.Add(dx);
        args.Add(weightTerms);
        args.Add(rows);
        args.Add(cols);
        args.Add(eps);
        if (accumulate is { } flag) args.Add(flag);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private void LaunchForward(GpuFunction function, DevicePtr x, DevicePtr weight, DevicePtr y, int rows, int cols, float eps, GpuStream stream)
    {
        Validate(rows, cols);
        var args = new KernelArgs();
        args.Add(x);
        args.Add(weight);
        args.Add(y);
        args.Add(rows);
        args.Add(cols);
        args.Add(eps);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private void LaunchGated(GpuFunction function, DevicePtr h, DevicePtr a, DevicePtr m, float gate, DevicePtr weight, DevicePtr y, int rows, int cols,
        float eps, GpuStream stream)
    {
        Validate(rows, cols);
        var args = new KernelArgs();
        args.Add(h);
        args.Add(a);
        args.Add(m);
        args.Add(gate);
        args.Add(weight);
        args.Add(y);
        args.Add(rows);
        args.Add(cols);
        args.Add(eps);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private void LaunchAdd(GpuFunction function, DevicePtr x, DevicePtr delta, DevicePtr sum, DevicePtr weight, DevicePtr y, int rows, int cols, float eps, GpuStream stream)
    {
        Validate(rows, cols);
        var args = new KernelArgs();
        args.Add(x);
        args.Add(delta);
        args.Add(sum);
        args.Add(weight);
        args.Add(y);
        args.Add(rows);
        args.Add(cols);
        args.Add(eps);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private static void Validate(int rows, int cols)
    {
        AtLeast(rows, 0, nameof(rows));
        AtLeast(cols, 1, nameof(cols));
    }
}
