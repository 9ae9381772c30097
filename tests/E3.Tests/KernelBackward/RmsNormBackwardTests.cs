using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.KernelBackward;

/// <summary>e3_rmsnorm_backward_f32 through <see cref="RmsNormKernels.Backward"/> against the analytic gradient in double and
/// finite differences of the double forward y = w·x·rsqrt(mean(x²) + eps).</summary>
[Collection(EmuCollection.Name)]
public sealed class RmsNormBackwardTests : BackwardHarness
{
    const float Eps = 1e-6f;

    [Theory]
    [MemberData(nameof(Shapes))]
    public void GradientsMatchTheAnalyticReferenceAndFiniteDifferences(int rows, int cols)
    {
        var x = Approx.Random(rows * cols, 10 + cols, 2f);
        var w = Approx.Random(cols, 20 + cols);
        var dy = Approx.Random(rows * cols, 30 + rows);
        using var kernels = new RmsNormKernels(Device);
        var dx = Upload<float>(new float[rows * cols]);
        var dw = Upload<float>(new float[cols]); // the contract: zeroed before the kernel accumulates
        kernels.Backward(Upload<float>(x), Upload<float>(w), Upload<float>(dy), dx, dw, rows, cols, Eps, Stream);
        var gotDx = Download(dx, rows * cols);
        var gotDw = Download(dw, cols);

        var want = Reference.Of(x, w, dy, rows, cols, Eps);
        Approx.Close(want.Dx, gotDx, i => DxBound(want, i, cols), $"dx {rows}x{cols}");
        Approx.Close(want.Dw, gotDw, c => DwBound(want, c, rows, cols), $"dweight {rows}x{cols}");

        double[] xd = Widen(x), wd = Widen(w);
        SpotCheck($"dx {rows}x{cols}", gotDx, p => Reference.Loss(p, wd, dy, rows, cols, Eps), xd,
            i => DxBound(want, i, cols), i => want.DxScale[i], seed: rows * 131 + cols);
        SpotCheck($"dweight {rows}x{cols}", gotDw, p => Reference.Loss(xd, p, dy, rows, cols, Eps), wd,
            c => DwBound(want, c, rows, cols), c => want.DwScale[c], seed: rows * 137 + cols);
    }

    [Fact]
    public void DweightIsAddedToNotOverwrittenSoTwoCallsAccumulate()
    {
        const int rows = 3, cols = 129;
        var x = Approx.Random(rows * cols, 40, 2f);
        var w = Approx.Random(cols, 41);
        var dy1 = Approx.Random(rows * cols, 42);
        var dy2 = Approx.Random(rows * cols, 43);
        var prior = Approx.Random(cols, 44, 5f); // what an earlier step left behind: the kernel must not clear it
        using var kernels = new RmsNormKernels(Device);
        var xd = Upload<float>(x);
        var wd = Upload<float>(w);
        var dx = Upload<float>(new float[rows * cols]);
        var dw = Upload<float>(prior);
        kernels.Backward(xd, wd, Upload<float>(dy1), dx, dw, rows, cols, Eps, Stream);
        kernels.Backward(xd, wd, Upload<float>(dy2), dx, dw, rows, cols, Eps, Stream);
        var got = Download(dw, cols);

        var first = Reference.Of(x, w, dy1, rows, cols, Eps);
        var second = Reference.Of(x, w, dy2, rows, cols, Eps);
        var want = prior.Select((p, c) => p + first.Dw[c] + second.Dw[c]).ToArray();
        // Each call's rows·cols bound as in the theory, on the accumulated magnitudes, plus the 2·rows additions
        // into a start value of |prior|: γ over 2·rows + 1 terms.
        Approx.Close(want, got, c => (2 * rows + cols + 9) * U * (Math.Abs(prior[c]) + first.DwScale[c] + second.DwScale[c]),
            "dweight after two calls on a non-zero start");
    }

    [Fact]
    public void BadShapesNameTheFieldAndNoRowsLeavesDweightUntouched()
    {
        using var kernels = new RmsNormKernels(Device);
        var buffer = Upload<float>([1f, 2f, 3f]);
        var rows = Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Backward(buffer, buffer, buffer, buffer, buffer, -1, 3, Eps, Stream));
        Assert.Equal("rows", rows.ParamName);
        Assert.Contains("-1", rows.Message);
        var cols = Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Backward(buffer, buffer, buffer, buffer, buffer, 1, 0, Eps, Stream));
        Assert.Equal("cols", cols.ParamName);

        var dw = Upload<float>([7f, -8f, 9f]);
        kernels.Backward(buffer, buffer, buffer, buffer, dw, 0, 3, Eps, Stream);
        Assert.Equal([7f, -8f, 9f], Download(dw, 3));
    }

    // dx = r·w·dy - x·r³/n·Σ(w·dy·x). The dot sums cols products (≤ cols·u of Σ|w·dy·x| in any order); r comes from a
    // sum of cols squares (cols·u, halved by the root) and rsqrtf (~2 ulp), so r³ carries ≤ (1.5·cols + 6)·u; a dozen
    // roundings in the products and the final subtraction. (3·cols + 16)·u of the two terms' magnitudes covers it,
    // and bounds the cancellation at cols = 1, where dx is nearly zero.
    static double DxBound(Reference r, int i, int cols) => (3 * cols + 16) * U * r.DxScale[i];

    // dw[c] = Σ_rows dy·x·r: each term carries r's (cols/2 + 2)·u and two product roundings, and the atomic sum in
    // any order adds ≤ rows·u of Σ|terms|.
    static double DwBound(Reference r, int c, int rows, int cols) => (rows + cols + 8) * U * r.DwScale[c];

    /// <summary>The analytic gradient in double and the magnitudes its terms reach.</summary>
    sealed record Reference(double[] Dx, double[] DxScale, double[] Dw, double[] DwScale)
    {
        public static Reference Of(float[] x, float[] w, float[] dy, int rows, int cols, double eps)
        {
            double[] dx = new double[rows * cols], dxScale = new double[rows * cols], dw = new double[cols], dwScale = new double[cols];
            for (int r = 0; r < rows; r++)
            {
                int o = r * cols;
                double squares = 0, dot = 0, dotMagnitude = 0;
                for (int c = 0; c < cols; c++)
                {
                    squares += (double)x[o + c] * x[o + c];
                    dot += (double)w[c] * dy[o + c] * x[o + c];
                    dotMagnitude += Math.Abs((double)w[c] * dy[o + c] * x[o + c]);
                }
                double inv = 1 / Math.Sqrt(squares / cols + eps);
                double k = inv * inv * inv / cols;
                for (int c = 0; c < cols; c++)
                {
                    dx[o + c] = inv * w[c] * dy[o + c] - k * x[o + c] * dot;
                    dxScale[o + c] = Math.Abs(inv * w[c] * dy[o + c]) + Math.Abs(k * x[o + c]) * dotMagnitude;
                    dw[c] += (double)dy[o + c] * x[o + c] * inv;
                    dwScale[c] += Math.Abs((double)dy[o + c] * x[o + c] * inv);
                }
            }
            return new Reference(dx, dxScale, dw, dwScale);
        }

        /// <summary>L = Σ dy·y of the double forward: its gradient is what the kernel computes.</summary>
        public static double Loss(double[] x, double[] w, float[] dy, int rows, int cols, double eps)
        {
            double loss = 0;
            for (int r = 0; r < rows; r++)
            {
                int o = r * cols;
                double squares = 0;
                for (int c = 0; c < cols; c++) squares += x[o + c] * x[o + c];
                double inv = 1 / Math.Sqrt(squares / cols + eps);
                for (int c = 0; c < cols; c++) loss += dy[o + c] * w[c] * x[o + c] * inv;
            }
            return loss;
        }
    }
}
