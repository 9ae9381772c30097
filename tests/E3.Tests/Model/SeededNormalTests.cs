using E3.Model;
using Xunit;

namespace E3.Tests.Model;

/// <summary>
/// <see cref="SeededNormal"/> against the standard normal distribution (moments, Kolmogorov–Smirnov against Φ, the
/// independence of a pair's two values and of neighbouring blocks), and its promise that a block's values depend on
/// nothing but the key, the block index and the length.
/// </summary>
public class SeededNormalTests
{
    const int Blocks = 2;
    const int N = Blocks * SeededNormal.BlockValues;
    // Bounds at five standard errors (or the KS quantile for p = 1e-6), so a correct generator fails about once in a
    // million runs, while a wrong scale, a missing half or a correlated pair lands far outside them.
    static readonly double FiveSigma = 5 / Math.Sqrt(N);

    static float[] Sample(ulong key, int blocks = Blocks)
    {
        var values = new float[blocks * SeededNormal.BlockValues];
        for (int b = 0; b < blocks; b++) SeededNormal.FillBlock(key, b, values.AsSpan(b * SeededNormal.BlockValues, SeededNormal.BlockValues));
        return values;
    }

    [Fact]
    public void MomentsAreThoseOfAStandardNormal()
    {
        float[] z = Sample(SeededNormal.Key(7, 0));
        double mean = z.Average(v => (double)v);
        double variance = z.Average(v => (double)v * v) - mean * mean;
        double skew = z.Average(v => Math.Pow(v - mean, 3)) / Math.Pow(variance, 1.5);
        double kurtosis = z.Average(v => Math.Pow(v - mean, 4)) / (variance * variance);
        Assert.InRange(mean, -FiveSigma, FiveSigma);
        Assert.InRange(variance, 1 - 5 * Math.Sqrt(2.0 / N), 1 + 5 * Math.Sqrt(2.0 / N));
        Assert.InRange(skew, -5 * Math.Sqrt(6.0 / N), 5 * Math.Sqrt(6.0 / N));
        Assert.InRange(kurtosis, 3 - 5 * Math.Sqrt(24.0 / N), 3 + 5 * Math.Sqrt(24.0 / N));
    }

    [Fact]
    public void KolmogorovSmirnovAgainstTheNormalCdf()
    {
        double[] z = Sample(SeededNormal.Key(11, 3)).Select(v => (double)v).Order().ToArray();
        double d = 0;
        for (int i = 0; i < z.Length; i++)
        {
            double cdf = NormalCdf(z[i]);
            d = Math.Max(d, Math.Max((i + 1.0) / z.Length - cdf, cdf - (double)i / z.Length));
        }
        // P(D > sqrt(ln(2/p) / 2n)) <= p (Dvoretzky–Kiefer–Wolfowitz); p = 1e-6. Φ's approximation error (1.5e-7) and
        // the 24-bit uniforms (steps of 6e-8 in probability) are far below it.
        Assert.True(d < Math.Sqrt(Math.Log(2 / 1e-6) / (2.0 * z.Length)), $"KS distance {d}");
        // Nothing beyond what 24-bit uniforms allow: r <= sqrt(-2 ln 2^-24).
        Assert.True(z[^1] <= Math.Sqrt(-2 * Math.Log(Math.Pow(2, -24))) + 1e-5 && -z[0] <= Math.Sqrt(-2 * Math.Log(Math.Pow(2, -24))) + 1e-5);
    }

    [Fact]
    public void PairsAndNeighbouringBlocksAreUncorrelated()
    {
        float[] z = Sample(SeededNormal.Key(5, 1));
        int half = SeededNormal.BlockValues / 2;
        // Within a block value j (a cosine) and value j + half (its pair's sine) come from one Box–Muller pair: they
        // must be uncorrelated, and so must their squares (a shared radius shows there unless the angle is uniform).
        var cos = z.AsSpan(0, half).ToArray();
        var sin = z.AsSpan(half, half).ToArray();
        Assert.InRange(Correlation(cos, sin), -5 / Math.Sqrt(half), 5 / Math.Sqrt(half));
        Assert.InRange(Correlation(cos.Select(v => v * v).ToArray(), sin.Select(v => v * v).ToArray()), -0.01, 0.01);
        Assert.InRange(Correlation(z.AsSpan(0, SeededNormal.BlockValues).ToArray(), z.AsSpan(SeededNormal.BlockValues).ToArray()),
            -5 / Math.Sqrt(SeededNormal.BlockValues), 5 / Math.Sqrt(SeededNormal.BlockValues));
        // Streams with neighbouring keys, too.
        float[] other = Sample(SeededNormal.Key(5, 2), 1);
        Assert.InRange(Correlation(z.AsSpan(0, SeededNormal.BlockValues).ToArray(), other),
            -5 / Math.Sqrt(SeededNormal.BlockValues), 5 / Math.Sqrt(SeededNormal.BlockValues));
    }

    [Fact]
    public void BlockDependsOnlyOnKeyIndexAndLength()
    {
        ulong key = SeededNormal.Key(3, 9);
        float[] sequential = Sample(key, 4);
        var parallel = new float[sequential.Length];
        Parallel.For(0, 4, b => SeededNormal.FillBlock(key, 3 - b, parallel.AsSpan((3 - b) * SeededNormal.BlockValues, SeededNormal.BlockValues)));
        Assert.Equal(sequential, parallel);

        // A shorter block of the same index: its cosines are the first values of the longer one's pairs.
        var shortBlock = new float[10];
        SeededNormal.FillBlock(key, 2, shortBlock);
        Assert.Equal(sequential.AsSpan(2 * SeededNormal.BlockValues, 5).ToArray(), shortBlock[..5]);
        var odd = new float[7];
        SeededNormal.FillBlock(key, 2, odd);
        Assert.Equal(shortBlock[..4], odd[..4]);
        Assert.All(odd, v => Assert.True(float.IsFinite(v)));

        Assert.Throws<ArgumentOutOfRangeException>(() => SeededNormal.FillBlock(key, 0, new float[SeededNormal.BlockValues + 1]));
        Assert.NotEqual(SeededNormal.Key(3, 9), SeededNormal.Key(3, 10));
        Assert.NotEqual(SeededNormal.Key(3, 9), SeededNormal.Key(4, 9));
    }

    static double Correlation(float[] a, float[] b)
    {
        double ma = a.Average(v => (double)v), mb = b.Average(v => (double)v), sab = 0, saa = 0, sbb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sab += (a[i] - ma) * (b[i] - mb);
            saa += (a[i] - ma) * (a[i] - ma);
            sbb += (b[i] - mb) * (b[i] - mb);
        }
        return sab / Math.Sqrt(saa * sbb);
    }

    // Φ(x) by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7 in erf).
    static double NormalCdf(double x)
    {
        double t = Math.Abs(x) / Math.Sqrt(2);
        double k = 1 / (1 + 0.3275911 * t);
        double erf = 1 - (((((1.061405429 * k - 1.453152027) * k) + 1.421413741) * k - 0.284496736) * k + 0.254829592) * k * Math.Exp(-t * t);
        return x >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
    }
}
