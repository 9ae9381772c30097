using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Pruning.Baselines;
using E3.Tests.Reference;
using E3.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace E3.Tests.Baselines;

/// <summary>
/// Greedy drop-one-KL against brute force on a random 6-layer Qwen3: the KL of every mask dropping one or two layers is
/// computed from the TorchSharp reference's float64 logits with torch's log_softmax, and the greedy's choices and KL
/// values must agree with it.
/// </summary>
public sealed class GreedyDropOneKlTests : IDisposable
{
    const int Layers = 6;
    readonly TempDir _dir = new("e3-baseline-kl");
    readonly CpuBackend _cpu = new(1);
    readonly string _folder;
    readonly CalibrationSet _data = BaselineFixture.Data(sequenceLength: 8, batch: 2, batches: 2, seed: 6);

    public GreedyDropOneKlTests() => _folder = BaselineFixture.WriteModel(_dir, Layers, seed: 35);

    // E3's fp32 logits are within ε = 1e-4 of the float64 oracle (ForwardParityTests). Moving every logit of p and q by
    // up to ε moves each log-probability by up to 2ε, so KL = Σ p (log p − log q) moves by at most
    // 4ε + 2ε·max|log p − log q| (the second term from the change in p); the test checks max|log p − log q| < 8,
    // which makes the bound 2e-3.
    const double KlTolerance = 2e-3;

    /// <summary>The full model's log-probabilities per calibration batch, float64 [B, T, V].</summary>
    static Tensor[] TeacherLogProbs(ReferenceCheckpoint reference, CalibrationSet data) =>
        Enumerable.Range(0, data.Batches.Count).Select(i =>
        {
            using var logits = TorchReferenceDecoder.Forward(reference, BaselineFixture.AsReferenceBatch(data, i), null, ScalarType.Float64);
            return F.log_softmax(logits, -1);
        }).ToArray();

    /// <summary>Mean KL(full‖masked) per token from reference logits, and the largest |log p − log q| seen.</summary>
    static (double Kl, double MaxLogRatio) ReferenceKl(ReferenceCheckpoint reference, CalibrationSet data, Tensor[] teacher, IReadOnlyCollection<int> dropped)
    {
        var gates = Enumerable.Range(0, Layers).Select(l => dropped.Contains(l) ? 0f : 1f).ToArray();
        double sum = 0, maxRatio = 0;
        for (int i = 0; i < data.Batches.Count; i++)
        {
            using var scope = torch.NewDisposeScope();
            var logP = teacher[i];
            var logQ = F.log_softmax(TorchReferenceDecoder.Forward(reference, BaselineFixture.AsReferenceBatch(data, i), gates, ScalarType.Float64), -1);
            sum += (logP.exp() * (logP - logQ)).sum().ToDouble();
            maxRatio = Math.Max(maxRatio, (logP - logQ).abs().max().ToDouble());
        }
        return (sum / data.Tokens, maxRatio);
    }

    [Fact]
    public void GreedyFollowsTheBruteForceKlOfEveryOneAndTwoLayerMask()
    {
        using var model = DecoderModel.Load(_folder, _cpu);
        var greedy = GreedyDropOneKl.Run(model, _data, count: 2);

        using var reference = ReferenceCheckpoint.Load(_folder, ScalarType.Float64);
        var teacher = TeacherLogProbs(reference, _data);
        var single = new double[Layers];
        double maxRatio = 0;
        for (int l = 0; l < Layers; l++)
        {
            (single[l], double ratio) = ReferenceKl(reference, _data, teacher, [l]);
            maxRatio = Math.Max(maxRatio, ratio);
        }
        var pairs = new Dictionary<(int, int), double>();
        for (int a = 0; a < Layers; a++)
            for (int b = a + 1; b < Layers; b++)
            {
                (pairs[(a, b)], double ratio) = ReferenceKl(reference, _data, teacher, [a, b]);
                maxRatio = Math.Max(maxRatio, ratio);
            }
        foreach (var t in teacher) t.Dispose();
        Assert.True(maxRatio < 8, $"max |log p − log q| = {maxRatio}: the KL tolerance assumes < 8");

        // Step one is the best single drop, and its per-layer KLs are every layer's drop-one KL.
        for (int l = 0; l < Layers; l++)
            Assert.True(Math.Abs(greedy.DropOneKl[l] - single[l]) <= KlTolerance, $"drop-one KL of layer {l}: E3 {greedy.DropOneKl[l]}, reference {single[l]}");
        int bestSingle = Array.IndexOf(single, single.Min());
        Assert.True(single.Where((_, l) => l != bestSingle).Min() - single[bestSingle] > 2 * KlTolerance, $"the best single drop is not clear of the tolerance: reference [{string.Join(", ", single)}], E3 [{string.Join(", ", greedy.DropOneKl)}], max ratio {maxRatio}");
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

    public void Dispose()
    {
        _cpu.Dispose();
        _dir.Dispose();
    }
}
