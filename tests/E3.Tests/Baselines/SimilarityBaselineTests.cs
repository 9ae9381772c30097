using E3.Pruning.Baselines;
using E3.Tests.Reference;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace E3.Tests.Baselines;

/// <summary>
/// bi and angular against a float64 recomputation from the TorchSharp reference's hidden states (transformers'
/// computation written from torch ops), on a random 7-layer Qwen3.
/// </summary>
public sealed class SimilarityBaselineTests : IDisposable
{
    const int Layers = 7;
    readonly BaselineFixture _fixture = new(Layers, modelSeed: 21, sequenceLength: 9, batch: 3, batches: 2, dataSeed: 4);
    CalibrationSet Data => _fixture.Data;

    // E3 runs in fp32 and the oracle in float64. ForwardParityTests bounds fp32 logits of order 1 at 1e-4 absolute; the
    // hidden states feeding them carry relative errors of the same order or less, and a cosine moves by at most about
    // twice the relative perturbation of its vectors, so 1e-4 bounds every averaged cosine.
    const double CosineTolerance = 1e-4;

    /// <summary>cos(h_a, h_b) per position, float64, [B, T].</summary>
    static Tensor Cosines(Tensor a, Tensor b) => F.cosine_similarity(a, b, dim: -1);

    Tensor[][] ReferenceStates() => BaselineFixture.OneTorchThread(() =>
    {
        using var reference = _fixture.LoadReference();
        return Enumerable.Range(0, Data.Batches.Count)
            .Select(i => TorchReferenceDecoder.HiddenStates(reference, _fixture.ReferenceBatch(i), ScalarType.Float64)).ToArray();
    });

    [Fact]
    public void BlockInfluenceEqualsOneMinusTheMeanCosineOfEachLayersInputAndOutput()
    {
        using var model = _fixture.LoadModel();
        double[] ours = BlockInfluence.Scores(model, Data);

        var states = ReferenceStates();
        var expected = new double[Layers];
        for (int l = 0; l < Layers; l++)
        {
            // Mean over every token of every batch (batches are the same size, so the mean of batch means).
            double sum = 0;
            foreach (var batch in states)
                using (var c = Cosines(batch[l], batch[l + 1])) sum += c.mean().ToDouble();
            expected[l] = 1 - sum / states.Length;
        }
        DisposeAll(states);

        Assert.True(expected.Max() - expected.Min() > 0.05, $"BI scores [{string.Join(", ", expected)}] too alike to test a ranking");
        for (int l = 0; l < Layers; l++)
            Assert.True(Math.Abs(ours[l] - expected[l]) <= CosineTolerance, $"BI[{l}]: E3 {ours[l]}, reference {expected[l]}");

        // The n lowest are dropped; checked only where the reference's ranking is clear of the tolerance.
        foreach (int n in new[] { 1, 2, 3 })
        {
            var sorted = expected.Order().ToArray();
            Assert.True(sorted[n] - sorted[n - 1] > 2 * CosineTolerance, $"n={n}: the reference's cut is within the tolerance");
            int[] referenceDrop = Enumerable.Range(0, Layers).OrderBy(l => expected[l]).Take(n).Order().ToArray();
            Assert.Equal(referenceDrop, LayerChoice.Lowest(ours, n));
        }
    }

    [Fact]
    public void AngularDistanceIsTheMeanLastTokenAngleAndTheBlockIsItsMinimum()
    {
        using var model = _fixture.LoadModel();
        var states = ReferenceStates();
        int T = Data.SequenceLength;
        foreach (int n in new[] { 2, 3 })
        {
            double[] ours = AngularDistance.Distances(model, Data, n);
            var expected = new double[Layers - n + 1];
            double largestCos = -1;
            for (int l = 0; l <= Layers - n; l++)
            {
                var angles = new List<double>();
                foreach (var batch in states)
                {
                    // Each sequence's final token only: [B, hidden] at position T-1.
                    using var c = Cosines(batch[l].select(1, T - 1), batch[l + n].select(1, T - 1));
                    foreach (double cos in c.data<double>().ToArray())
                    {
                        angles.Add(Math.Acos(cos) / Math.PI);
                        largestCos = Math.Max(largestCos, cos);
                    }
                }
                Assert.Equal(Data.Batch * Data.Batches.Count, angles.Count);
                expected[l] = angles.Average();
            }
            // d = acos(c)/π has slope 1/(π·sqrt(1 − c²)); with every c ≤ 0.98 that is under 1.6, so the cosine bound
            // carries over as 1.6·1e-4.
            Assert.True(largestCos <= 0.98, $"cosines up to {largestCos}: too close to 1 for the bound below");
            const double tolerance = 1.6 * CosineTolerance;
            Assert.Equal(expected.Length, ours.Length);
            for (int l = 0; l < expected.Length; l++)
                Assert.True(Math.Abs(ours[l] - expected[l]) <= tolerance, $"n={n} d({l}, {l + n}): E3 {ours[l]}, reference {expected[l]}");

            int best = Array.IndexOf(expected, expected.Min());
            var others = expected.Where((_, l) => l != best);
            Assert.True(others.Min() - expected[best] > 2 * tolerance, $"n={n}: the reference's best block is within the tolerance of another");
            Assert.Equal(best, AngularDistance.BestStart(ours));
        }
        DisposeAll(states);
    }

    static void DisposeAll(Tensor[][] states)
    {
        foreach (var batch in states)
            foreach (var t in batch) t.Dispose();
    }

    public void Dispose() => _fixture.Dispose();
}
