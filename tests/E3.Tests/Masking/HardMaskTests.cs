using E3.Backends.Numerics;
using E3.Pruning.Masking;
using Xunit;

namespace E3.Tests.Masking;

public sealed class HardMaskTests
{
    [Fact]
    public void EveryRowKeepsExactlyKTheHighestScoringLayersForAllShapes()
    {
        // L = 1..256 and every k in 1..L, two samples each; the kept set is checked against the scores recomputed
        // from the noise: every kept layer outscores every dropped one (or ties it from a lower index).
        var sampler = new CpuGumbelTopK();
        var random = new Random(5);
        for (var layers = 1; layers <= GumbelTopKSpec.MaxLayers; layers++)
        {
            var logits = new float[layers];
            for (var i = 0; i < layers; i++) logits[i] = (float)(random.NextDouble() * 4 - 2);
            var scores = new double[2 * layers];
            for (var s = 0; s < 2; s++)
                for (var i = 0; i < layers; i++)
                    scores[s * layers + i] = logits[i] + GumbelNoise.Sample(99, layers, s, i);
            var hard = new float[2 * layers];
            for (var keep = 1; keep <= layers; keep++)
            {
                sampler.SampleHard(logits, new GumbelTopKSpec(layers, keep, 2, 1f, 99, layers), hard);
                for (var s = 0; s < 2; s++)
                {
                    var row = hard.AsSpan(s * layers, layers);
                    var ones = 0;
                    double lowestKept = double.PositiveInfinity, highestDropped = double.NegativeInfinity;
                    for (var i = 0; i < layers; i++)
                    {
                        Assert.True(row[i] is 0f or 1f);
                        if (row[i] == 1f) { ones++; lowestKept = Math.Min(lowestKept, scores[s * layers + i]); }
                        else highestDropped = Math.Max(highestDropped, scores[s * layers + i]);
                    }
                    Assert.Equal(keep, ones);
                    Assert.True(lowestKept >= highestDropped, $"L={layers} k={keep} sample {s}");
                }
            }
        }
    }

    [Fact]
    public void TiesGoToTheLowerLayerIndex()
    {
        double[] scores = [1, 3, 3, 2, 3, 1];
        var order = new int[scores.Length];
        StableTopK.Order(scores, order);
        Assert.Equal([1, 2, 4, 3, 0, 5], order);

        var mask = new float[5];
        DeterministicMask.TopK([0.5f, 2f, 0.5f, 2f, 0.5f], 3, mask);
        Assert.Equal([1f, 1f, 0f, 1f, 0f], mask);
    }

    [Fact]
    public void DeterministicMaskIsTheTopKOfTheLogitsWithoutNoise()
    {
        var random = new Random(11);
        for (var trial = 0; trial < 200; trial++)
        {
            var layers = random.Next(1, 65);
            var keep = random.Next(1, layers + 1);
            // Values from a small grid so that ties occur often.
            var logits = Enumerable.Range(0, layers).Select(_ => random.Next(-4, 5) * 0.5f).ToArray();
            var mask = new float[layers];
            DeterministicMask.TopK(logits, keep, mask);
            // Reference: LINQ's OrderBy is a stable sort, so equal logits stay in index order.
            var kept = Enumerable.Range(0, layers).OrderByDescending(i => logits[i]).Take(keep).ToHashSet();
            for (var i = 0; i < layers; i++)
                Assert.Equal(kept.Contains(i) ? 1f : 0f, mask[i]);
        }
    }

    [Fact]
    public void SameSeedSameMasksAndOtherStepsDiffer()
    {
        var logits = Enumerable.Range(0, 32).Select(i => MathF.Sin(i)).ToArray();
        var a = new float[64 * 32];
        var b = new float[64 * 32];
        var c = new float[64 * 32];
        new CpuGumbelTopK(1).SampleHard(logits, new GumbelTopKSpec(32, 10, 64, 1f, 7, 3), a);
        new CpuGumbelTopK(2).SampleHard(logits, new GumbelTopKSpec(32, 10, 64, 1f, 7, 3), b);
        new CpuGumbelTopK().SampleHard(logits, new GumbelTopKSpec(32, 10, 64, 1f, 7, 4), c);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }
}
