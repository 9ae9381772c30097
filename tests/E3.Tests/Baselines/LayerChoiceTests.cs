using E3.Pruning.Baselines;
using Xunit;

namespace E3.Tests.Baselines;

/// <summary>The selection rules (lowest scores, last, seeded random, block) and the prune-target ranges.</summary>
public sealed class LayerChoiceTests
{
    [Fact]
    public void LowestPicksTheSmallestScoresAndBreaksTiesTowardTheDeeperLayer()
    {
        Assert.Equal([1, 4], LayerChoice.Lowest([0.5, 0.1, 0.9, 0.7, 0.2], 2));
        // Layers 1 and 2 tie: the deeper one goes first.
        Assert.Equal([2], LayerChoice.Lowest([1.0, 0.0, 0.0, 2.0], 1));
        Assert.Equal([1, 2], LayerChoice.Lowest([1.0, 0.0, 0.0, 2.0], 2));
    }

    [Fact]
    public void LastAndBlockAreTheirRanges()
    {
        Assert.Equal([5, 6, 7], LayerChoice.Last(8, 3));
        Assert.Equal([2, 3], LayerChoice.Block(2, 2));
        // angular: ties go to the deeper block.
        Assert.Equal(2, AngularDistance.BestStart([0.3, 0.1, 0.1, 0.2]));
    }

    [Fact]
    public void SeededIsDeterministicAndUniformOverLayers()
    {
        const int layers = 8, drop = 3, seeds = 4000;
        Assert.Equal(LayerChoice.Seeded(layers, drop, 42), LayerChoice.Seeded(layers, drop, 42));
        var counts = new int[layers];
        var distinct = new HashSet<string>();
        for (ulong seed = 0; seed < seeds; seed++)
        {
            int[] chosen = LayerChoice.Seeded(layers, drop, seed);
            Assert.Equal(drop, chosen.Distinct().Count());
            Assert.All(chosen, l => Assert.InRange(l, 0, layers - 1));
            Assert.Equal(chosen.Order(), chosen);
            foreach (int l in chosen) counts[l]++;
            distinct.Add(string.Join(",", chosen));
        }
        // Each layer is dropped with probability 3/8: a binomial count over 4000 seeds with σ ≈ 30.6; 5σ bounds it
        // with a false-failure chance below 1e-5 per layer.
        double p = (double)drop / layers, sigma = Math.Sqrt(seeds * p * (1 - p));
        foreach (int c in counts) Assert.InRange(c, seeds * p - 5 * sigma, seeds * p + 5 * sigma);
        // All C(8, 3) = 56 subsets occur (each has probability 1/56; missing one in 4000 draws has chance < 1e-29).
        Assert.Equal(56, distinct.Count);
    }

    [Fact]
    public void PruneTargetRejectsCountsThatDropNothingOrEverything()
    {
        Assert.Equal(2, PruneTarget.FromRatio(8, 0.25).Drop);
        Assert.Equal(4, PruneTarget.FromRatio(14, 0.25).Drop); // 3.5 rounds up, as LayerMask.DropLast does
        Assert.Equal(5, PruneTarget.FromKeep(8, 3).Drop);
        Assert.Contains("--keep: 8", Assert.Throws<ArgumentOutOfRangeException>(() => PruneTarget.FromKeep(8, 8)).Message);
        Assert.Contains("--keep: 0", Assert.Throws<ArgumentOutOfRangeException>(() => PruneTarget.FromKeep(8, 0)).Message);
        Assert.Contains("--prune", Assert.Throws<ArgumentOutOfRangeException>(() => PruneTarget.FromRatio(8, 0.01)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => PruneTarget.FromRatio(8, 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => PruneTarget.FromRatio(8, double.NaN));
    }
}
