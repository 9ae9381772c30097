using E3.Interop.Kernels;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.KernelBackward;

/// <summary>e3_swiglu_backward_f32 through <see cref="SwiGluKernels.Backward"/> against the analytic gradient of
/// y = silu(g)·u in double and finite differences of that forward.</summary>
[Collection(EmuCollection.Name)]
public sealed class SwiGluBackwardTests : BackwardHarness
{
    [Theory]
    [MemberData(nameof(Shapes))]
    public void GradientsMatchTheAnalyticReferenceAndFiniteDifferences(int rows, int cols)
    {
        int n = rows * cols;
        var g = Approx.Random(n, 50 + cols, 6f); // ±6 reaches both tails of the sigmoid
        var u = Approx.Random(n, 60 + rows, 2f);
        var dy = Approx.Random(n, 70 + n);
        using var kernels = new SwiGluKernels(Device);
        var dgate = Upload<float>(new float[n]);
        var dup = Upload<float>(new float[n]);
        kernels.Backward(Upload<float>(g), Upload<float>(u), Upload<float>(dy), dgate, dup, n, Stream);
        var gotGate = Download(dgate, n);
        var gotUp = Download(dup, n);

        var wantGate = new double[n];
        var wantUp = new double[n];
        var scale = new double[n];
        for (int i = 0; i < n; i++)
        {
            double s = 1 / (1 + Math.Exp(-(double)g[i]));
            wantUp[i] = dy[i] * g[i] * s;
            wantGate[i] = dy[i] * u[i] * s * (1 + g[i] * (1 - s));
            scale[i] = Math.Abs(dy[i] * u[i] * s) * (1 + Math.Abs(g[i]));
        }
        // dup = dy·g·s: s = 1/(1 + expf(-g)) is within 4 ulp (expf ~2, the add and the division), two products: 8·u.
        Func<int, double> upBound = i => 8 * U * Math.Abs(wantUp[i]);
        // dgate = dy·u·s·(1 + g·(1 - s)): 1 - s cancels for large g, so s's 4·u·s absolute error reaches the bracket
        // multiplied by |g|; with the other roundings the bracket is within (6|g| + 2)·u and the products add 8·u of
        // the whole, all under 16·u·|dy·u·s|·(1 + |g|).
        Func<int, double> gateBound = i => 16 * U * scale[i];
        Approx.Close(wantUp, gotUp, upBound, $"dup {n}");
        Approx.Close(wantGate, gotGate, gateBound, $"dgate {n}");

        double[] gd = Widen(g), ud = Widen(u);
        SpotCheck($"dup {n}", gotUp, p => Loss(gd, p, dy), ud, upBound, i => Math.Abs(wantUp[i]) + Math.Abs(dy[i]), seed: n);
        SpotCheck($"dgate {n}", gotGate, p => Loss(p, ud, dy), gd, gateBound, i => scale[i], seed: n + 1);
    }

    [Fact]
    public void NegativeCountNamesTheFieldAndZeroCountWritesNothing()
    {
        using var kernels = new SwiGluKernels(Device);
        var buffer = Upload<float>([1f, 2f]);
        var count = Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Backward(buffer, buffer, buffer, buffer, buffer, -3, Stream));
        Assert.Equal("count", count.ParamName);
        Assert.Contains("-3", count.Message);

        var dgate = Upload<float>([5f, 6f]);
        kernels.Backward(buffer, buffer, buffer, dgate, dgate, 0, Stream);
        Assert.Equal([5f, 6f], Download(dgate, 2));
    }

    /// <summary>L = Σ dy·silu(g)·u in double.</summary>
    static double Loss(double[] g, double[] u, float[] dy)
    {
        double loss = 0;
        for (int i = 0; i < g.Length; i++) loss += dy[i] * g[i] / (1 + Math.Exp(-g[i])) * u[i];
        return loss;
    }
}
