using E3.Interop.Kernels.Bench;
using E3.Model.Evaluation;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary>
/// The distribution-free interval for a median that <c>bench speedup</c> reports for its paired ratios: its coverage
/// against exact enumeration of every sign pattern, and against draws from skewed distributions whose median is known.
/// </summary>
public sealed class MedianIntervalTests
{
    /// <summary>
    /// Coverage of [x₍ₖ₎, x₍ₙ₊₁₋ₖ₎] by counting: the median lies inside unless fewer than k of the n draws fall on one
    /// side of it, and each draw falls on either side with probability ½, so over all 2ⁿ equally likely patterns of
    /// sides the interval misses exactly when the count below is under k or the count above is.
    /// </summary>
    static double CoverageByEnumeration(int n, int k)
    {
        long inside = 0;
        for (long pattern = 0; pattern < 1L << n; pattern++)
        {
            int below = System.Numerics.BitOperations.PopCount((ulong)pattern);
            if (below >= k && n - below >= k) inside++;
        }
        return inside / (double)(1L << n);
    }

    [Fact]
    public void TheBinomialTailMatchesCounting()
    {
        for (int n = 0; n <= 20; n++)
            for (int k = -1; k <= n + 1; k++)
            {
                long count = 0;
                for (long pattern = 0; pattern < 1L << n; pattern++)
                    if (System.Numerics.BitOperations.PopCount((ulong)pattern) <= k) count++;
                Assert.Equal(count / (double)(1L << n), BenchStatistics.BinomialHalfCdf(n, k), 1e-12);
            }
        // Far past 2^-1074, where 2^-n alone underflows: the tail must still be a probability and symmetric.
        Assert.Equal(0.5, BenchStatistics.BinomialHalfCdf(2001, 1000), 9);
    }

    [Fact]
    public void TheIntervalIsTheNarrowestOrderStatisticPairThatReachesTheLevel()
    {
        Assert.Null(BenchStatistics.MedianInterval([1, 2, 3, 4, 5])); // the full range of 5 covers 93.75% only
        for (int n = 6; n <= 20; n++)
        {
            var values = Enumerable.Range(0, n).Select(i => (double)(n - i)).ToArray(); // unsorted on purpose
            var interval = BenchStatistics.MedianInterval(values)!.Value;
            int k = (int)interval.Low; // the values are 1..n, so an order statistic is its own rank
            Assert.Equal(n + 1 - k, (int)interval.High);
            Assert.Equal(CoverageByEnumeration(n, k), interval.Coverage, 1e-12);
            Assert.True(interval.Coverage >= 0.95, $"n={n}: coverage {interval.Coverage}");
            Assert.True(CoverageByEnumeration(n, k + 1) < 0.95, $"n={n}: k={k + 1} would also reach 95%, so k={k} is not the narrowest");
            Assert.Equal(n, values[0]); // the input was not reordered
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => BenchStatistics.MedianInterval([1, 2, 3], 1.0));
    }

    /// <summary>
    /// Draws from skewed distributions with known medians (exponential: ln 2; log-normal: 1), 20,000 samples of 9: the
    /// share of intervals that hold the median is within 1% of the computed coverage (its standard error is 0.16%).
    /// </summary>
    [Theory]
    [InlineData("exponential")]
    [InlineData("lognormal")]
    public void TheIntervalHoldsTheMedianAsOftenAsItsCoverageSays(string distribution)
    {
        var random = new Random(11);
        double Draw() => distribution == "exponential"
            ? -Math.Log(1 - random.NextDouble())
            : Math.Exp(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        double median = distribution == "exponential" ? Math.Log(2) : 1;
        const int trials = 20_000, n = 9;
        int held = 0;
        double coverage = 0;
        var sample = new double[n];
        for (int t = 0; t < trials; t++)
        {
            for (int j = 0; j < n; j++) sample[j] = Draw();
            var interval = BenchStatistics.MedianInterval(sample)!.Value;
            coverage = interval.Coverage;
            if (interval.Low <= median && median <= interval.High) held++;
        }
        Assert.Equal(coverage, held / (double)trials, 0.01);
    }

    [Fact]
    public void APhaseReportsItsPairedMedianAndInterval()
    {
        var few = new PhaseSpeed(1, 1) { FullSeconds = [2, 2, 2], PrunedSeconds = [1, 2, 1.6] };
        Assert.Equal(1.25, few.PairedMedian, 1e-12);
        Assert.Null(few.PairedInterval);

        var full = Enumerable.Repeat(1.3, 7).ToArray();
        var pruned = new[] { 1.0, 0.9, 1.1, 1.05, 0.95, 1.2, 1.0 };
        var phase = new PhaseSpeed(1, 1) { FullSeconds = full, PrunedSeconds = pruned };
        var ratios = phase.PairedSpeedups.Order().ToArray();
        var interval = phase.PairedInterval!.Value;
        Assert.Equal(ratios[0], interval.Low, 1e-12);  // 7 values: only the full range reaches 95% (98.4%)
        Assert.Equal(ratios[6], interval.High, 1e-12);
        Assert.Equal(1 - 2.0 / 128, interval.Coverage, 1e-12);
        Assert.Equal(1.3, phase.PairedMedian, 1e-12);
    }
}
