using E3.Pruning.Masking;
using Xunit;

namespace E3.Tests.Masking;

/// <summary>
/// Gumbel-top-k draws k layers without replacement, each in proportion to softmax(alpha) over those left
/// (Plackett-Luce). The exact probability of each k-subset is enumerated over its k! orders and compared with
/// the empirical frequencies of 10^5 masks by a chi-square test at significance 0.001 (fixed seed, so the
/// outcome is deterministic; a correct sampler fails such a test with probability 0.001).
/// </summary>
public sealed class SamplingLawTests
{
    private const int Draws = 100_000;
    private const double Significance = 0.001;

    public static TheoryData<int, float[]> Cases() => new()
    {
        { 2, [0.9f, -0.3f, 0.2f, 1.4f, -1.1f, 0.0f] },
        { 3, [0.9f, -0.3f, 0.2f, 1.4f, -1.1f, 0.0f] },
        { 3, [0.5f, -0.8f, 1.2f, 0.1f, -0.2f, 0.7f, -1.5f, 0.3f] },
        { 5, [0.5f, -0.8f, 1.2f, 0.1f, -0.2f, 0.7f, -1.5f, 0.3f] },
        { 7, [0.5f, -0.8f, 1.2f, 0.1f, -0.2f, 0.7f, -1.5f, 0.3f] },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void SubsetFrequenciesFollowPlackettLuce(int keep, float[] logits)
    {
        var counts = CountSubsets(logits, keep, seed: 12345);
        var expected = ExactSubsetProbabilities(logits.Select(v => (double)v).ToArray(), keep);
        Assert.Equal(1.0, expected.Values.Sum(), 12);

        var (statistic, df) = Statistic(counts, expected);
        var p = ChiSquare.PValue(statistic, df);
        Assert.True(p > Significance, $"chi2 = {statistic:F2} on {df} df, p = {p:E3}");
    }

    [Fact]
    public void TheTestRejectsAWrongLaw()
    {
        // Power check: the same draws judged against Plackett-Luce on 1.3 * alpha (a sampler that ignored the
        // temperature of the logits, say) must be rejected, or the test above could not tell laws apart.
        float[] logits = [0.5f, -0.8f, 1.2f, 0.1f, -0.2f, 0.7f, -1.5f, 0.3f];
        var counts = CountSubsets(logits, 3, seed: 12345);
        var wrong = ExactSubsetProbabilities(logits.Select(v => 1.3 * v).ToArray(), 3);
        var (statistic, df) = Statistic(counts, wrong);
        Assert.True(ChiSquare.PValue(statistic, df) < Significance);
    }

    [Theory]
    // Upper 0.001 quantiles of chi-square (standard tables, 3 decimals): Q must be 0.001 to the table's precision.
    [InlineData(1, 10.828)]
    [InlineData(2, 13.816)]
    [InlineData(5, 20.515)]
    [InlineData(10, 29.588)]
    [InlineData(30, 59.703)]
    [InlineData(55, 93.168)]
    public void PValueMatchesTabulatedCriticalValues(int df, double critical)
    {
        // Table rounding (<= 0.0005 in the statistic) moves p by about 0.0005 * density / p < 0.05% relative
        // here; allow 1%, far below what a wrong incomplete gamma (or Wilson-Hilferty at df = 1, ~10%) gives.
        Assert.Equal(0.001, ChiSquare.PValue(critical, df), 0.001 * 0.01);
    }

    [Fact]
    public void PValueMatchesClosedForms()
    {
        // df = 2: Q = exp(-x/2) exactly; df = 1: Q = erfc(sqrt(x/2)), here at x = 3.841459 (the 0.05 quantile).
        foreach (var x in new[] { 0.1, 1.0, 7.5, 40.0 })
            Assert.Equal(Math.Exp(-x / 2), ChiSquare.PValue(x, 2), 1e-13);
        Assert.Equal(0.05, ChiSquare.PValue(3.841458820694124, 1), 1e-9);
    }

    private static Dictionary<int, long> CountSubsets(float[] logits, int keep, ulong seed)
    {
        var spec = new GumbelTopKSpec(logits.Length, keep, Draws, 1f, seed, 0);
        var hard = new float[spec.MaskElements];
        new CpuGumbelTopK().SampleHard(logits, spec, hard);
        var counts = new Dictionary<int, long>();
        for (var s = 0; s < Draws; s++)
        {
            var bits = 0;
            for (var i = 0; i < logits.Length; i++)
                if (hard[s * logits.Length + i] == 1f)
                    bits |= 1 << i;
            counts[bits] = counts.GetValueOrDefault(bits) + 1;
        }
        return counts;
    }

    // Sum over every order of the subset of the product of successive softmax draws without replacement.
    private static Dictionary<int, double> ExactSubsetProbabilities(double[] alpha, int keep)
    {
        var weights = alpha.Select(Math.Exp).ToArray();
        var total = weights.Sum();
        var result = new Dictionary<int, double>();
        void Extend(int chosen, int depth, double probability, double remaining)
        {
            if (depth == keep)
            {
                result[chosen] = result.GetValueOrDefault(chosen) + probability;
                return;
            }
            for (var i = 0; i < alpha.Length; i++)
                if ((chosen & (1 << i)) == 0)
                    Extend(chosen | (1 << i), depth + 1, probability * weights[i] / remaining, remaining - weights[i]);
        }
        Extend(0, 0, 1.0, total);
        return result;
    }

    // Pearson statistic over all C(L, k) subsets; subsets expecting fewer than 5 draws are pooled into one bin
    // (and that bin into the smallest regular bin if the pool itself still expects fewer than 5).
    private static (double Statistic, int DegreesOfFreedom) Statistic(Dictionary<int, long> counts, Dictionary<int, double> probabilities)
    {
        Assert.All(counts.Keys, subset => Assert.True(probabilities.ContainsKey(subset), $"drew impossible subset {subset:b}"));
        var bins = new List<(double Expected, long Observed)>();
        double pooledExpected = 0;
        long pooledObserved = 0;
        foreach (var (subset, probability) in probabilities)
        {
            var expected = probability * Draws;
            var observed = counts.GetValueOrDefault(subset);
            if (expected >= 5)
                bins.Add((expected, observed));
            else
            {
                pooledExpected += expected;
                pooledObserved += observed;
            }
        }
        if (pooledExpected >= 5)
            bins.Add((pooledExpected, pooledObserved));
        else if (pooledExpected > 0)
        {
            var smallest = bins.IndexOf(bins.MinBy(b => b.Expected));
            bins[smallest] = (bins[smallest].Expected + pooledExpected, bins[smallest].Observed + pooledObserved);
        }
        var statistic = bins.Sum(b => (b.Observed - b.Expected) * (b.Observed - b.Expected) / b.Expected);
        return (statistic, bins.Count - 1);
    }
}
