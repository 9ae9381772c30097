using E3.Interop.Gpu;
using E3.Tests.GpuBackend;
using Xunit;
using Xunit.Sdk;

namespace E3.Tests.KernelBackward;

/// <summary>
/// What every backward-kernel test needs: the emulator device with a stream, buffers released with the test, the odd
/// shapes the slice covers, and a central finite difference of a double-precision loss to spot-check gradients.
/// </summary>
public abstract class BackwardHarness : IDisposable
{
    /// <summary>fp32 unit roundoff: one rounding moves a value by at most 2^-24 of itself.</summary>
    protected const double U = 1.0 / (1 << 24);

    /// <summary>Rows (or tokens) by columns: single rows and columns, a partial warp (31), a full one (64) and one past
    /// a multiple of the warp (129), so idle lanes and lanes owning several columns are both exercised.</summary>
    public static TheoryData<int, int> Shapes()
    {
        var data = new TheoryData<int, int>();
        foreach (int rows in new[] { 1, 3, 7 })
            foreach (int cols in new[] { 1, 31, 64, 129 })
                data.Add(rows, cols);
        return data;
    }

    private readonly EmuDeviceScope emu = new();
    private readonly List<DeviceBuffer> buffers = [];

    /// <summary>The emulator behind <see cref="IGpuDevice"/>.</summary>
    private protected IGpuDevice Device => emu.Device;

    /// <summary>The stream every launch of the test goes on.</summary>
    private protected GpuStream Stream => emu.Stream.Handle;

    /// <summary>A device copy of <paramref name="values"/>, freed when the test ends.</summary>
    private protected DevicePointer<T> Upload<T>(ReadOnlySpan<T> values) where T : unmanaged => emu.Upload(buffers, values);

    /// <summary>The first <paramref name="count"/> values at <paramref name="source"/>, after the stream's queued work.</summary>
    private protected T[] Download<T>(DevicePointer<T> source, int count) where T : unmanaged => emu.Download(source, count);

    /// <summary>
    /// Central difference (L(p + h e_j) - L(p - h e_j)) / 2h with a relative step h = 1e-4·max(|p_j|, 1): relative for
    /// ordinary values, and never vanishing at zero. <paramref name="point"/> is restored afterwards.
    /// </summary>
    protected static double CentralDifference(Func<double[], double> loss, double[] point, int index)
    {
        double saved = point[index];
        double h = 1e-4 * Math.Max(Math.Abs(saved), 1);
        point[index] = saved + h;
        double up = loss(point);
        point[index] = saved - h;
        double down = loss(point);
        point[index] = saved;
        return (up - down) / (2 * h);
    }

    /// <summary>
    /// Checks the kernel's gradient <paramref name="got"/> at a few elements (first, last and two random ones) against a
    /// central difference of <paramref name="loss"/>. Allowed error: the kernel's own fp32 bound plus the difference's
    /// error. For these smooth functions of O(1) inputs (|p| ≤ 6), the truncation term h²/6·|L'''| with
    /// h ≤ 6e-4 is below ~1e-7 of the gradient's scale, and rounding in double adds about 2^-53·|L|/h ≤ 1e-16·1e4/1e-4
    /// = 1e-8 absolute (losses here stay below ~1e4); 1e-6 of the scale plus 1e-7 absolute covers both with a margin
    /// while staying far below any real mistake in a gradient formula.
    /// </summary>
    protected static void SpotCheck(string what, ReadOnlySpan<float> got, Func<double[], double> loss, double[] point,
        Func<int, double> kernelBound, Func<int, double> scale, int seed)
    {
        var random = new Random(seed);
        int n = point.Length;
        foreach (int j in new[] { 0, n - 1, random.Next(n), random.Next(n) })
        {
            double want = CentralDifference(loss, point, j);
            double limit = kernelBound(j) + 1e-6 * scale(j) + 1e-7;
            double error = Math.Abs(got[j] - want);
            if (!(error <= limit))
                throw new XunitException($"{what}: element {j} is {got[j]}, finite difference gives {want} ± {limit}");
        }
    }

    /// <summary>The same values in double, the precision of the references.</summary>
    protected static double[] Widen(float[] values) => values.Select(v => (double)v).ToArray();

    /// <summary>Releases the buffers and the device.</summary>
    public void Dispose()
    {
        foreach (var buffer in buffers) buffer.Dispose();
        emu.Dispose();
        GC.SuppressFinalize(this);
    }
}
