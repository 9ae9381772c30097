using E3.Interop.Kernels;
using E3.Pruning.Masking;
using TorchSharp;
using Xunit;

namespace E3.Tests.Masking;

/// <summary>
/// The CPU sampler's two soft-top-k recurrences (multiplicative weights, and log space for samples whose weights
/// span more than fp32 holds) are each taken, and each matches the TorchSharp fp64 composite; and the
/// branch-free ranking equals a stable sort, ties included.
/// </summary>
public sealed class SoftTopKRecurrenceTests
{
    public static TheoryData<string, int, int, float, float, int> Cases() => new()
    {
        // name, layers, keep, tau, logit spread, expected path: -1 weights throughout, 0 log space from the
        // start, 1 = some sample leaves the weights after its first step.
        // Logits in [-1, 1] at tau = 1: weights within e^-12 of each other, never near 2^-100.
        { "benchmark-like", 64, 48, 1f, 2f, -1 },
        // Spread 200 at tau = 1: exp(-200) < 2^-100 from the start.
        { "huge spread", 40, 30, 1f, 200f, 0 },
        // tau = 0.2 and spread 12 (z spread <= 60 + noise/tau, mostly inside 2^-100 = e^-69): the picked
        // leader's q^(1/tau) = e^(-gap/tau^2) then falls below 2^-100 of the next weight.
        { "steep leader", 8, 4, 0.2f, 12f, 1 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void EachRecurrenceIsTakenAndMatchesTheFp64Composite(string name, int layers, int keep, float tau, float spread, int expectedPath)
    {
        const int samples = 64;
        var spec = new GumbelTopKSpec(layers, keep, samples, tau, 4242, 1);
        var logits = Enumerable.Range(0, layers).Select(i => spread * ((i * 37 % layers) / (float)Math.Max(1, layers - 1) - 0.5f)).ToArray();
        var random = new Random(layers);
        var gradMask = Enumerable.Range(0, samples * layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();

        var row = new GumbelTopKRow(spec, relaxed: true);
        var hard = new float[layers];
        var paths = new List<int>();
        for (var s = 0; s < samples; s++)
        {
            row.Rank(logits, s, hard);
            row.Forward();
            paths.Add(row.LogSpaceFallbackStep);
        }
        if (expectedPath < 0)
            Assert.All(paths, p => Assert.Equal(-1, p));
        else if (expectedPath == 0)
            Assert.All(paths, p => Assert.Equal(0, p));
        else
            Assert.Contains(paths, p => p >= 1);

        float[] soft = new float[spec.MaskElements], grad = new float[layers], allHard = new float[spec.MaskElements];
        new CpuGumbelTopK().ForwardBackward(logits, spec, gradMask, allHard, soft, grad);
        var (exactSoft, exactGrad) = RelaxationReferenceTests.TorchReference(spec, logits, gradMask, torch.ScalarType.Float64);
        var (torchSoft, torchGrad) = RelaxationReferenceTests.TorchReference(spec, logits, gradMask);
        var (logSoft, logGrad) = RunRows(spec, logits, gradMask, forceLogSpace: true);
        // Bound: no worse than twice the larger error of two independent same-precision computations of the same
        // formula against fp64, torch's fp32 composite and the sampler's log-space recurrence (the flash-attention
        // argument: that is what fp32 achieves at this conditioning, which small tau makes large: each step's
        // Jacobian scales by 1/tau). Never asked below 2e-6 of the largest magnitude, the bound of the
        // well-conditioned reference tests. Measured (fused / log space / torch): steep leader dL/dalpha 2.7e-4 /
        // 1.8e-4 / 1.3e-4, soft 1.9e-6 / 4.6e-6 / 3.6e-6; the other cases all within 2.2e-5.
        AssertWithinTwiceReference(exactSoft, torchSoft, logSoft, soft, $"{name}: soft");
        AssertWithinTwiceReference(exactGrad, torchGrad, logGrad, grad, $"{name}: dL/dalpha");
    }

    [Fact]
    public void RanksEqualAStableSortWithAndWithoutTies()
    {
        var random = new Random(17);
        for (var n = 1; n <= 80; n++)
            for (var trial = 0; trial < 20; trial++)
            {
                // Half the trials draw from a 5-value grid, so ties are common; the other half are distinct.
                var scores = Enumerable.Range(0, n).Select(_ => trial % 2 == 0 ? random.Next(5) * 0.25 : random.NextDouble()).ToArray();
                var order = new int[n];
                StableTopK.Order(scores, order);
                // LINQ's OrderByDescending is a stable sort: equal scores stay in index order.
                Assert.Equal(Enumerable.Range(0, n).OrderByDescending(i => scores[i]).ToArray(), order);
            }
    }

    [Fact]
    public void NaNScoresHaveNoRank() =>
        Assert.Throws<ArgumentException>(() => StableTopK.Order([1.0, double.NaN, 0.5, 2.0], new int[4]));

    private static (float[] Soft, float[] Grad) RunRows(GumbelTopKSpec spec, float[] logits, float[] gradMask, bool forceLogSpace)
    {
        var row = new GumbelTopKRow(spec, relaxed: true) { ForceLogSpace = forceLogSpace };
        var layers = spec.Layers;
        var soft = new float[spec.MaskElements];
        var grad = new double[layers];
        var hard = new float[layers];
        for (var s = 0; s < spec.Samples; s++)
        {
            row.Rank(logits, s, hard);
            row.Forward();
            row.Soft.CopyTo(soft.AsSpan(s * layers, layers));
            row.Backward(gradMask.AsSpan(s * layers, layers));
            for (var i = 0; i < layers; i++)
                grad[i] += row.GradLogits[i];
        }
        return (soft, grad.Select(g => (float)g).ToArray());
    }

    private static void AssertWithinTwiceReference(float[] exact, float[] torchFp32, float[] logSpace, float[] actual, string what)
    {
        var scale = exact.Max(v => Math.Abs((double)v));
        var referenceError = Math.Max(MaxError(exact, torchFp32), MaxError(exact, logSpace));
        var error = MaxError(exact, actual);
        var bound = Math.Max(2 * referenceError, 2e-6 * scale);
        Assert.True(error <= bound, $"{what}: max |diff| {error:E3} > bound {bound:E3} (references {referenceError:E3}, scale {scale:E3})");
    }

    private static double MaxError(float[] exact, float[] actual) => exact.Zip(actual, (e, a) => Math.Abs((double)e - a)).Max();
}
