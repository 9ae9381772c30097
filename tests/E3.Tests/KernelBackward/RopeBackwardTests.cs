using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.KernelBackward;

/// <summary>e3_rope_backward_f32 through <see cref="RopeKernels.RopeBackward"/>: the transpose (inverse) of the rotate_half
/// rotation, against the double rotation by -angle, finite differences of the double forward, and a round trip.</summary>
[Collection(EmuCollection.Name)]
public sealed class RopeBackwardTests : BackwardHarness
{
    const int Heads = 3, TokensPerSequence = 3, Start = 5;
    const float Theta = 10000f;

    // cols counts rotation pairs, so head_dim = 2·cols is always even: 1 pair, 31 (one lane idle), 64 (two per lane)
    // and 129 (one lane with five).
    [Theory]
    [MemberData(nameof(Shapes))]
    public void GradientMatchesTheInverseRotationAndFiniteDifferences(int tokens, int pairs)
    {
        var layout = Layout(tokens, pairs);
        int n = tokens * Heads * layout.HeadDim;
        var dy = Approx.Random(n, 100 + n, 2f);
        using var kernels = new RopeKernels(Device);
        var dx = Upload<float>(new float[n]);
        kernels.RopeBackward(dx, Upload<float>(dy), layout, Stream);
        var got = Download(dx, n);

        var (want, scale, angle) = Rotate(Widen(dy), layout, inverse: true);
        Approx.Close(want, got, i => Bound(scale[i], angle[i]), $"rope backward {tokens}x{pairs}");

        // L(x) = Σ dy·rope(x) is linear in x, so its central difference is the transposed rotation of dy.
        SpotCheck($"rope backward {tokens}x{pairs}", got, x => Dot(dy, Rotate(x, layout, inverse: false).Values), new double[n],
            i => Bound(scale[i], angle[i]), i => scale[i], seed: n);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BackwardInPlaceUndoesTheForwardRotation(int tokens, int pairs)
    {
        var layout = Layout(tokens, pairs);
        int n = tokens * Heads * layout.HeadDim;
        var x = Approx.Random(n, 200 + n, 3f);
        using var kernels = new RopeKernels(Device);
        var buffer = Upload<float>(x);
        kernels.HeadNormRope(buffer, default, 1e-6f, layout, Stream); // null norm weight: rotation only
        kernels.RopeBackward(buffer, buffer, layout, Stream); // dx aliasing dy, as the wrapper allows
        var got = Download(buffer, n);

        var (_, scale, _) = Rotate(Widen(x), layout, inverse: false);
        // Both passes use the same fp32 cos and sin, so the angle's error cancels: what remains is c² + s² - 1 (the
        // polynomials are within ~2 ulp each, ≤ 4·u) and two roundings per product and sum in each pass (≤ 6·u), all
        // relative to the pair's |a| + |b|: 16·u leaves a margin.
        Approx.Close(Widen(x), got, i => 16 * U * scale[i], $"rope round trip {tokens}x{pairs}");
    }

    [Fact]
    public void BadLayoutsNameTheField()
    {
        using var kernels = new RopeKernels(Device);
        var buffer = Upload<float>(new float[8]);
        void Expect(string field, RopeLayout layout)
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => kernels.RopeBackward(buffer, buffer, layout, Stream));
            Assert.Equal(field, error.ParamName);
        }
        Expect("Tokens", new RopeLayout(-1, 1, 8, Theta, 1, 0));
        Expect("Heads", new RopeLayout(1, 0, 8, Theta, 1, 0));
        Expect("HeadDim", new RopeLayout(1, 1, 7, Theta, 1, 0));
        Expect("HeadDim", new RopeLayout(1, 1, 0, Theta, 1, 0));
        Expect("Theta", new RopeLayout(1, 1, 8, float.NaN, 1, 0));
        Expect("TokensPerSequence", new RopeLayout(1, 1, 8, Theta, 0, 0));
        Expect("StartPosition", new RopeLayout(1, 1, 8, Theta, 1, -2));
    }

    static RopeLayout Layout(int tokens, int pairs) => new(tokens, Heads, 2 * pairs, Theta, TokensPerSequence, Start);

    // The kernel forms the angle in fp32: the exponent -(2i/d)·ln θ (|e| ≤ ln θ) carries ~3·u·|e| absolute from the
    // division, logf and the product, expf adds ~2·u relative and the product with the position one more, so the
    // angle is within (3·ln θ + 4)·u·|angle|; sin/cos then add a few ulp and the rotation's products and sum ~3·u.
    // Each output moves by at most that much times its pair's |a| + |b|.
    static double Bound(double pairScale, double angle) => pairScale * U * (Math.Abs(angle) * (3 * Math.Log(Theta) + 4) + 16);

    /// <summary>rotate_half by +angle (forward) or -angle (backward) in double, with each output's |a| + |b| and angle.</summary>
    static (double[] Values, double[] PairScale, double[] Angle) Rotate(double[] v, in RopeLayout layout, bool inverse)
    {
        var result = new double[v.Length];
        var scale = new double[v.Length];
        var angles = new double[v.Length];
        int half = layout.HeadDim / 2;
        for (int t = 0; t < layout.Tokens; t++)
            for (int h = 0; h < layout.Heads; h++)
            {
                int o = (t * layout.Heads + h) * layout.HeadDim;
                int position = layout.StartPosition + t % layout.TokensPerSequence;
                for (int i = 0; i < half; i++)
                {
                    double angle = position * Math.Pow(layout.Theta, -2.0 * i / layout.HeadDim);
                    double cos = Math.Cos(angle), sin = inverse ? -Math.Sin(angle) : Math.Sin(angle);
                    double a = v[o + i], b = v[o + i + half];
                    result[o + i] = a * cos - b * sin;
                    result[o + i + half] = b * cos + a * sin;
                    scale[o + i] = scale[o + i + half] = Math.Abs(a) + Math.Abs(b);
                    angles[o + i] = angles[o + i + half] = angle;
                }
            }
        return (result, scale, angles);
    }

    static double Dot(float[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }
}
