using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>Typed launches of kernels/rows.cu (one block of 256 threads per row).</summary>
internal sealed class RowKernels : KernelFamily
{
    private readonly GpuFunction gatherF32, gatherBf16, broadcastF32, broadcastBf16, columnSumF32;

    /// <summary>Loads rows.cu on <paramref name="device"/>.</summary>
    public RowKernels(IGpuDevice device) : base(device, "rows")
    {
        gatherF32 = Function("e3_gather_rows_f32");
        gatherBf16 = Function("e3_gather_rows_bf16");
        broadcastF32 = Function("e3_broadcast_row_f32");
        broadcastBf16 = Function("e3_broadcast_row_bf16");
        columnSumF32 = Function("e3_column_sum_f32");
    }

    /// <summary>sum[c] += Σ_r x[r,c], rows added in order (one thread per column; deterministic).</summary>
    public void ColumnSum(DevicePointer<float> x, DevicePointer<float> sum, int rows, int width, GpuStream stream)
    {
        AtLeast(rows, 0, nameof(rows));
        AtLeast(width, 1, nameof(width));
        var args = new KernelArgs();
        args.Add(x);
        args.Add(sum);
        args.Add(rows);
        args.Add(width);
        Launch(columnSumF32, LaunchShapes.GridStride(width), stream, args);
    }

    /// <summary>dst[i,:] = src[rows[i],:] for i &lt; count; the row indices must already be checked against src.</summary>
    public void Gather(DevicePointer<float> src, DevicePointer<int> rows, DevicePointer<float> dst, int count, int width, GpuStream stream) =>
        LaunchRows(gatherF32, src.Raw, rows.Raw, dst.Raw, count, width, stream);

    /// <summary>bf16 version (a plain copy of the bits).</summary>
    public void Gather(DevicePointer<Bf16> src, DevicePointer<int> rows, DevicePointer<Bf16> dst, int count, int width, GpuStream stream) =>
        LaunchRows(gatherBf16, src.Raw, rows.Raw, dst.Raw, count, width, stream);

    /// <summary>y[r,:] = bias[:] for r &lt; rows.</summary>
    public void Broadcast(DevicePointer<float> bias, DevicePointer<float> y, int rows, int width, GpuStream stream) =>
        LaunchBroadcast(broadcastF32, bias.Raw, y.Raw, rows, width, stream);

    /// <summary>bf16 version.</summary>
    public void Broadcast(DevicePointer<Bf16> bias, DevicePointer<Bf16> y, int rows, int width, GpuStream stream) =>
        LaunchBroadcast(broadcastBf16, bias.Raw, y.Raw, rows, width, stream);

    private void LaunchRows(GpuFunction function, DevicePtr src, DevicePtr rows, DevicePtr dst, int count, int width, GpuStream stream)
    {
        AtLeast(count, 0, nameof(count));
        AtLeast(width, 1, nameof(width));
        var args = new KernelArgs();
        args.Add(src);
        args.Add(rows);
        args.Add(dst);
        args.Add(count);
        args.Add(width);
        Launch(function, LaunchShapes.RowPerBlock(count), stream, args);
    }

    private void LaunchBroadcast(GpuFunction function, DevicePtr bias, DevicePtr y, int rows, int width, GpuStream stream)
    {
        AtLeast(rows, 0, nameof(rows));
        AtLeast(width, 1, nameof(width));
        var args = new KernelArgs();
        args.Add(bias);
        args.Add(y);
        args.Add(rows);
        args.Add(width);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }
}
