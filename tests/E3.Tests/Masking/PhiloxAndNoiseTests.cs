using E3.Backends.Numerics;
using E3.Pruning.Masking;
using Xunit;

namespace E3.Tests.Masking;

public sealed class PhiloxAndNoiseTests
{
    private static readonly double TwoToMinus53 = Math.ScaleB(1.0, -53);

    // Random123's kat_vectors for philox4x32 with 10 rounds: counter (4 words), key (2 words), expected output.
    [Theory]
    [InlineData(0u, 0u, 0u, 0u, 0u, 0u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void PhiloxMatchesRandom123KnownAnswers(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint x0, uint x1, uint x2, uint x3) =>
        Assert.Equal(new PhiloxBlock(x0, x1, x2, x3), Philox4x32.Generate(c0, c1, c2, c3, k0, k1));

    [Fact]
    public void NoiseFollowsTheDocumentedCounterLayout()
    {
        // Layer 5 of sample 7 at step 2^33 + 9 under seed 0x0123456789abcdef: counter (2, 7, 9, 2), key (0x89abcdef, 0x01234567),
        // odd layer so words 2 and 3; then the 52-bit uniform and the double Gumbel transform, written out independently.
        const ulong seed = 0x0123456789abcdefUL;
        const long step = (1L << 33) + 9;
        var block = Philox4x32.Generate(2, 7, 9, 2, 0x89abcdefu, 0x01234567u);
        var x = (((ulong)block.X2 << 32) | block.X3) >> 12;
        var u = (x + 0.5) / 4503599627370496.0;
        Assert.Equal(u, GumbelNoise.Uniform(seed, step, 7, 5));
        Assert.Equal(-Math.Log(-Math.Log(u)), GumbelNoise.Sample(seed, step, 7, 5));
    }

    [Fact]
    public void FillAgreesWithPerLayerSamplesAndStaysInsideTheOpenInterval()
    {
        var noise = new double[255]; // odd length: the last Philox call serves one layer only
        for (var sample = 0; sample < 200; sample++)
        {
            GumbelNoise.Fill(42, 3, sample, noise);
            for (var layer = 0; layer < noise.Length; layer++)
            {
                Assert.Equal(GumbelNoise.Sample(42, 3, sample, layer), noise[layer]);
                Assert.True(double.IsFinite(noise[layer]));
                var u = GumbelNoise.Uniform(42, 3, sample, layer);
                Assert.InRange(u, TwoToMinus53, 1 - TwoToMinus53);
            }
        }
    }

    [Fact]
    public void ExtremeUniformsGiveFiniteNoise()
    {
        // The smallest and largest u the 52-bit mapping can produce: log never sees 0 and -log(u) never is 0.
        Assert.True(double.IsFinite(-Math.Log(-Math.Log(TwoToMinus53))));
        Assert.True(double.IsFinite(-Math.Log(-Math.Log(1 - TwoToMinus53))));
    }

    [Fact]
    public void NoiseMomentsMatchTheGumbelLaw()
    {
        // Standard Gumbel: mean = Euler-Mascheroni gamma, variance = pi^2 / 6. With n = 200k draws the standard
        // error of the mean is sqrt(1.645 / n) = 0.0029 and that of the variance sqrt((mu4 - sigma^4) / n) =
        // sqrt(4.4 * 1.645^2 / n) = 0.0077 (excess kurtosis 12/5);
        // the bounds are 5 standard errors, so a correct generator fails with probability < 1e-6 (fixed seed anyway).
        const int samples = 2000, layers = 100;
        var noise = new double[layers];
        double sum = 0, squares = 0;
        for (var s = 0; s < samples; s++)
        {
            GumbelNoise.Fill(2024, 0, s, noise);
            foreach (var g in noise)
            {
                sum += g;
                squares += g * g;
            }
        }
        const double n = samples * layers;
        var mean = sum / n;
        var variance = squares / n - mean * mean;
        Assert.InRange(mean, 0.5772156649 - 5 * 0.0029, 0.5772156649 + 5 * 0.0029);
        Assert.InRange(variance, Math.PI * Math.PI / 6 - 5 * 0.0077, Math.PI * Math.PI / 6 + 5 * 0.0077);
    }
}
