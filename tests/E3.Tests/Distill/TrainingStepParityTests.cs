using Xunit;
using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Optim;
using E3.Pruning.Data;
using E3.Pruning.Distill;
using E3.Tests.Reference;
using E3.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace E3.Tests.Distill;

/// <summary>
/// One optimizer step of <c>e3 train</c>'s loop against an independent oracle: TorchSharp autograd through the
/// reference decoder for the gradient of the mean next-token cross-entropy averaged over two micro-batches, then
/// global-norm clipping and the AdamW update written out in double.
/// </summary>
public sealed class TrainingStepParityTests
{
    const int Batch = 2, Seq = 7, Accum = 2;
    const double Lr = 1e-2, WeightDecay = 0.1, Beta1 = 0.9, Beta2 = 0.999;
    // A large ε keeps the first Adam step proportional to the gradient (≈ lr·g/(|g|+ε)) instead of ≈ lr·sign(g),
    // so the comparison checks gradient magnitudes, not only their signs.
    const double Epsilon = 1e-2;

    [Theory]
    [InlineData(true, 0.05)]  // tied head; a clip below the gradient norm, so clipping is exercised
    [InlineData(false, 0.0)]  // untied head; no clipping
    public void OneStepMatchesAutogradAndAdamW(bool tied, double clip)
    {
        using var dir = new TempDir("e3-distill-parity");
        var config = new ReferenceConfig("qwen3", VocabSize: 31, HiddenSize: 24, IntermediateSize: 40, NumHiddenLayers: 2, NumAttentionHeads: 4,
            NumKeyValueHeads: 2, HeadDim: 8, RmsNormEps: 1e-6, RopeTheta: 1_000_000, TieWordEmbeddings: tied, AttentionBias: false);
        string model = dir["model"], output = dir["out"];
        ReferenceCheckpointWriter.WriteRandom(model, config, seed: 5, projectionStd: 0.15);
        var random = new Random(11);
        int[] stream = Enumerable.Range(0, 300).Select(_ => random.Next(config.VocabSize)).ToArray();
        var settings = new TrainingSettings
        {
            Tokens = Batch * Seq * Accum, Sequence = Seq, Batch = Batch, GradAccum = Accum, LearningRate = Lr, Warmup = 0,
            Schedule = LrSchedule.Constant, Clip = clip, WeightDecay = WeightDecay, Seed = 99, CheckpointEvery = 0,
        };

        using (var backend = new CpuBackend(1))
        using (var student = DecoderModel.Load(model, backend))
        {
            var job = new TrainingJob
            {
                Student = student, StudentFolder = model, Objective = new CrossEntropyObjective(Enumerable.Repeat(1f, 2).ToArray()),
                Tokens = stream, DataSource = "stream", Settings = settings, Output = output,
                Optimizer = new AdamWOptions(Beta1, Beta2, Epsilon),
            };
            var outcome = TrainingRunner.Run(job);
            Assert.Equal(1, outcome.Result.Steps);
        }

        var expected = ReferenceStep(model, config, stream, settings, clip);
        using var trained = ReferenceCheckpoint.Load(output);
        Assert.Equal(expected.Keys.OrderBy(k => k), trained.TensorNames.OrderBy(k => k));
        foreach (var (name, (before, after)) in expected)
        {
            float[] actual = trained.Weight(name).data<float>().ToArray();
            double worstMove = 0;
            for (int i = 0; i < actual.Length; i++)
            {
                // Gradients from two fp32 implementations differ by ~1e-6 absolute; the update's sensitivity to g is at
                // most lr/ε, so the weights may differ by lr·1e-4. lr·1e-3 leaves a 10× margin, and is still 1/10 of a
                // typical update (≈ lr·|g|/(|g|+ε) with |g| ~ 1e-2), so a wrong gradient, clip or decay fails.
                Assert.True(Math.Abs(actual[i] - after[i]) <= Lr * 1e-3,
                    $"{name}[{i}]: e3 {actual[i]:R}, reference {after[i]:R} (before {before[i]:R})");
                worstMove = Math.Max(worstMove, Math.Abs(after[i] - before[i]));
            }
            Assert.True(worstMove > Lr * 1e-2, $"{name}: the reference step barely moved the weights ({worstMove}); the test would not see an error");
        }
    }

    /// <summary>The oracle's step: returns (weights before, weights after) per tensor.</summary>
    static Dictionary<string, (double[] Before, double[] After)> ReferenceStep(string model, ReferenceConfig config, int[] stream, TrainingSettings s, double clip)
    {
        using var checkpoint = ReferenceCheckpoint.Load(model);
        using var scope = torch.NewDisposeScope();
        var names = checkpoint.TensorNames.ToArray();
        foreach (var n in names) checkpoint.Weight(n).requires_grad_(true);
        var windows = new TokenWindows(stream, s.Sequence, s.Batch, s.Seed);
        Tensor? total = null;
        for (int micro = 0; micro < Accum; micro++)
        {
            var inputs = new int[Batch * Seq];
            var targets = new int[Batch * Seq];
            windows.Fill(micro, inputs, targets);
            var ids = torch.tensor(inputs.Select(x => (long)x).ToArray(), dtype: ScalarType.Int64);
            var embedded = checkpoint.Weight("model.embed_tokens.weight").index_select(0, ids).reshape(Batch, Seq, config.HiddenSize);
            var gates = torch.ones(config.NumHiddenLayers, dtype: ScalarType.Float32);
            var logits = TorchReferenceDecoder.ForwardFromEmbeddings(checkpoint, embedded, gates).reshape(-1, config.VocabSize);
            var loss = F.cross_entropy(logits, torch.tensor(targets.Select(x => (long)x).ToArray()));
            total = total is null ? loss : total + loss;
        }
        (total! / Accum).backward();

        var grads = names.ToDictionary(n => n, n => checkpoint.Weight(n).grad!.to(ScalarType.Float64).contiguous().data<double>().ToArray());
        double norm = Math.Sqrt(grads.Values.Sum(g => g.Sum(x => x * x)));
        double factor = clip > 0 && norm > clip ? clip / (norm + 1e-6) : 1.0;
        if (clip > 0) Assert.True(norm > clip, $"gradient norm {norm} does not exceed the clip {clip}");
        var result = new Dictionary<string, (double[], double[])>();
        foreach (var n in names)
        {
            double[] w = checkpoint.Weight(n).detach().to(ScalarType.Float64).contiguous().data<double>().ToArray();
            double[] g = grads[n];
            var after = new double[w.Length];
            for (int i = 0; i < w.Length; i++)
            {
                double gi = g[i] * factor;
                double mHat = (1 - Beta1) * gi / (1 - Beta1), vHat = (1 - Beta2) * gi * gi / (1 - Beta2);
                after[i] = w[i] * (1 - Lr * WeightDecay) - Lr * mHat / (Math.Sqrt(vHat) + Epsilon);
            }
            result[n] = (w, after);
        }
        return result;
    }
}
