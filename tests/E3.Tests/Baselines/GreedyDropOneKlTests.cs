using E3.Pruning.Baselines;
using Xunit;

namespace E3.Tests.Baselines;

/// <summary>
/// Greedy drop-one-KL against brute force on a random 6-layer Qwen3: the KL of every mask dropping one or two layers is
/// computed from the TorchSharp reference's float64 logits with torch's log_softmax, and the greedy's choices and KL
/// values must agree with it.
/// </summary>
public sealed class GreedyDropOneKlTests : IDisposable
{
    const int Layers = 6;
    readonly BaselineFixture _fixture = new(Layers, modelSeed: 35, sequenceLength: 8, batch: 2, batches: 2, dataSeed: 6);

    // E3's fp32 logits are within ε = 1e-4 of the float64 oracle (ForwardParityTests). Moving every logit of p and q by
    // up to ε moves each log-probability by up to 2ε, so KL = Σ p (log p − log q) moves by at most
    // 4ε + 2ε·max|log p − log q| (the second term from the change in p); the test checks max|log p − log q| < 8,
    // which makes the bound 2e-3.
    const double KlTolerance = 2e-3;

    [Fact]
    public void GreedyFollowsTheBruteForceKlOfEveryOneAndTwoLayerMask()
    {
        using var model = _fixture.LoadModel();
        var greedy = GreedyDropOneKl.Run(model, _fixture.Data, count: 2);

        int[][] singles = Enumerable.Range(0, Layers).Select(l => new[] { l }).ToArray();
        int[][] pairMasks = (from a in Enumerable.Range(0, Layers) from b in Enumerable.Range(a + 1, Layers - a - 1) select new[] { a, b }).ToArray();
        var (klOfMask, maxRatio) = _fixture.ReferenceKl([.. singles, .. pairMasks]);
        double[] single = klOfMask.Take(Layers).ToArray();
        var pairs = pairMasks.Select((m, i) => (Key: (m[0], m[1]), Value: klOfMask[Layers + i])).ToDictionary(p => p.Key, p => p.Value);
        Assert.True(maxRatio < 8, $"max |log p − log q| = {maxRatio}: the KL tolerance assumes < 8");

        // Step one is the best single drop, and its per-layer KLs are every layer's drop-one KL.
        for (int l = 0; l < Layers; l++)
            Assert.True(Math.Abs(greedy.DropOneKl[l] - single[l]) <= KlTolerance, $"drop-one KL of layer {l}: E3 {greedy.DropOneKl[l]}, reference {single[l]}");
        int bestSingle = Array.IndexOf(single, single.Min());
        Assert.True(single.Where((_, l) => l != bestSingle).Min() - single[bestSingle] > 2 * KlTolerance, $"the best single drop is not clear of the tolerance: reference [{string.Join(", ", single)}]");
        Assert.Equal(bestSingle, greedy.Order[0]);
        Assert.Equal(single[bestSingle], greedy.KlAfterStep[0], KlTolerance);

        // Step two is the best pair containing the first choice.
        var withFirst = pairs.Where(p => p.Key.Item1 == bestSingle || p.Key.Item2 == bestSingle).OrderBy(p => p.Value).ToArray();
        Assert.True(withFirst[1].Value - withFirst[0].Value > 2 * KlTolerance, "the best second drop is not clear of the tolerance");
        var (a0, b0) = withFirst[0].Key;
        Assert.Equal(a0 == bestSingle ? b0 : a0, greedy.Order[1]);
        Assert.Equal(withFirst[0].Value, greedy.KlAfterStep[1], KlTolerance);

        // Greedy never beats the optimum over all C(6, 2) masks; KL only grows as layers go.
        Assert.True(pairs.Values.Min() <= greedy.KlAfterStep[1] + KlTolerance, $"greedy KL {greedy.KlAfterStep[1]} is below the brute-force optimum {pairs.Values.Min()}");
        Assert.True(greedy.KlAfterStep[0] > 0 && greedy.KlAfterStep[1] > greedy.KlAfterStep[0]);
    }

    public void Dispose() => _fixture.Dispose();
}
