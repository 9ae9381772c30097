using E3.Backends.Numerics;
using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distillation;
using E3.Pruning.Masking;
using E3.Pruning.Search;
using E3.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.Search;

/// <summary>
/// dL/dα of a search step is the straight-through estimator: the trainer's gate gradients at the hard masks, pulled
/// back through the relaxed (successive-softmax) top-k on the same Gumbel noise. Checked against a TorchSharp
/// float64 autograd composite and against central finite differences of the relaxed objective in double.
/// </summary>
public sealed class StraightThroughGradientTests
{
    private const int Layers = 4, Keep = 2, Samples = 3;
    private const float Tau = 0.7f;
    private const ulong Seed = 11;
    private const long Step = 3;

    /// <summary>A tiny random model and a search over it whose step uses exactly (Keep, Tau): τ0 = τmin and warm-up keep = keep.</summary>
    private sealed class Case : IDisposable
    {
        private readonly TempDir dir = new();
        private readonly CpuBackend backend = new(2);

        public Case()
        {
            string folder = SearchModels.Write(dir, "model", Layers, weakLayers: []);
            var (_, ids) = SearchModels.Tokens(dir, "data.bin", 500);
            Model = DecoderModel.Load(folder, backend);
            Options = new SearchOptions { Keep = Keep, WarmupKeep = Keep, Steps = 10, Samples = Samples, Tau0 = Tau, TauMin = Tau, Seed = Seed, Init = AlphaInit.Uniform };
            Batches = new LiveTeacherBatches(ids, 16, 2, Seed, "data.bin");
            Search = new MaskSearch(Model, Batches, Options);
        }

        public DecoderModel Model { get; }
        public SearchOptions Options { get; }
        public LiveTeacherBatches Batches { get; }
        public MaskSearch Search { get; }

        public void Dispose()
        {
            Search.Dispose();
            Model.Dispose();
            backend.Dispose();
            dir.Dispose();
        }
    }

    [Fact]
    public void AlphaGradientIsTheRelaxedTopKPullbackOfTheGateGradients()
    {
        using var c = new Case();
        float[] alpha = [0.3f, -0.2f, 0.5f, 0.1f];
        var g = c.Search.Gradient(alpha, Step);

        var noise = new double[Samples, Layers];
        for (int s = 0; s < Samples; s++)
            for (int l = 0; l < Layers; l++) noise[s, l] = GumbelNoise.Sample(Seed, Step, s, l);

        // Hard masks: the top-k of α + g, enumerated here in double.
        for (int s = 0; s < Samples; s++)
        {
            var top = Enumerable.Range(0, Layers).OrderByDescending(l => alpha[l] + noise[s, l]).ThenBy(l => l).Take(Keep).ToHashSet();
            for (int l = 0; l < Layers; l++) Assert.Equal(top.Contains(l) ? 1f : 0f, g.HardMasks[s * Layers + l]);
        }
        Assert.Contains(g.GateGradients, v => Math.Abs(v) > 1e-6f); // a real signal, not zeros

        var (torchSoft, torchGrad) = TorchComposite(alpha, noise, g.GateGradients);
        var fdGrad = FiniteDifferences(alpha, noise, g.GateGradients);
        // The float64 autograd and the double finite differences agree to the difference's truncation error,
        // O(ε²) with ε = 1e-5: far below 1e-8.
        for (int l = 0; l < Layers; l++) Assert.Equal(torchGrad[l], fdGrad[l], 1e-8);
        // Ours runs in fp32 (scores rounded to fp32, fp32 softmax and logs over k = 2 rounds): ~1e-6 relative per
        // operation, so 1e-5 on the soft masks (values <= 1) and 1e-4 of the gradient's norm.
        for (int i = 0; i < torchSoft.Length; i++) Assert.Equal(torchSoft[i], g.SoftMasks[i], 1e-5);
        double norm = Math.Sqrt(torchGrad.Sum(v => v * v));
        for (int l = 0; l < Layers; l++)
            Assert.True(Math.Abs(g.AlphaGradient[l] - torchGrad[l]) <= 1e-4 * norm, $"dα[{l}]: ours {g.AlphaGradient[l]}, reference {torchGrad[l]} (norm {norm})");
    }

    [Fact]
    public void GateGradientsAreTheDerivativeOfTheDistillationLoss()
    {
        using var c = new Case();
        var g = c.Search.Gradient([0.3f, -0.2f, 0.5f, 0.1f], Step);
        var (model, batches, options) = (c.Model, c.Batches, c.Options);

        // The loss of sample 0 as a function of its gates, recomputed from scratch on the same batch and teacher.
        var inputs = new int[batches.TokensPerBatch];
        batches.Fill(Step, inputs);
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions { ComputeDroppedLayers = true });
        var teacher = new DenseTeacher(trainer.Forward(inputs, 2, [1f, 1f, 1f, 1f]), inputs.Length, SearchModels.Vocab);
        double LossAt(float[] gates) => EntropyKdLoss.Compute(trainer.Forward(inputs, 2, gates), SearchModels.Vocab, teacher, default, options.Kd).Loss;
        var hard = g.HardMasks[..Layers];
        var analytic = g.GateGradients[..Layers].Select(v => (double)v * Samples).ToArray(); // undo the 1/S average
        // Central differences with Richardson extrapolation, (4·D(h/2) − D(h)) / 3 at h = 2e-3: a strong layer
        // switched off (gate 0) makes the loss sharply curved in its gate, so plain D(1e-2) is off by a third, but
        // the extrapolation cancels the h² term and leaves O(h⁴). The fp32 forward rounds the loss at ~1e-7
        // relative, i.e. ~1e-4 absolute in D(1e-3) for losses of order 1: the tolerance below is 2e-3 of the norm.
        double Difference(float[] gates, int l, float h)
        {
            var plus = (float[])gates.Clone();
            var minus = (float[])gates.Clone();
            plus[l] += h;
            minus[l] -= h;
            return (LossAt(plus) - LossAt(minus)) / ((double)plus[l] - minus[l]);
        }
        var numeric = new double[Layers];
        for (int l = 0; l < Layers; l++)
            numeric[l] = (4 * Difference(hard, l, 1e-3f) - Difference(hard, l, 2e-3f)) / 3;
        double norm = Math.Sqrt(numeric.Sum(v => v * v));
        Assert.True(norm > 1e-3, $"no gradient signal: [{string.Join(", ", numeric)}]");
        for (int l = 0; l < Layers; l++)
            Assert.True(Math.Abs(analytic[l] - numeric[l]) <= 2e-3 * norm + 1e-4, $"dL/dm[{l}]: analytic {analytic[l]}, central difference {numeric[l]}");
    }

    // Successive softmax in float64 autograd: k rounds of p = softmax(s/τ), y += p, s += log(max(1 − p, 1e-20)).
    private static (double[] Soft, double[] Grad) TorchComposite(float[] alpha, double[,] noise, float[] gateGrads)
    {
        using var scope = NewDisposeScope();
        var a = tensor(alpha.Select(v => (double)v).ToArray(), ScalarType.Float64).requires_grad_();
        var n = tensor(noise, ScalarType.Float64);
        var gates = tensor(gateGrads.Select(v => (double)v).ToArray(), ScalarType.Float64).reshape(Samples, Layers);
        var s = a.unsqueeze(0) + n;
        var y = zeros(Samples, Layers, ScalarType.Float64);
        for (int t = 0; t < Keep; t++)
        {
            var p = (s / Tau).softmax(1);
            y = y + p;
            s = s + (1 - p).clamp_min(1e-20).log();
        }
        (y * gates).sum().backward();
        return (y.detach().reshape(-1).data<double>().ToArray(), a.grad!.data<double>().ToArray());
    }

    private static double[] FiniteDifferences(float[] alpha, double[,] noise, float[] gateGrads)
    {
        const double eps = 1e-5;
        var result = new double[Layers];
        var point = alpha.Select(v => (double)v).ToArray();
        for (int l = 0; l < Layers; l++)
        {
            var plus = (double[])point.Clone();
            var minus = (double[])point.Clone();
            plus[l] += eps;
            minus[l] -= eps;
            result[l] = (Relaxed(plus, noise, gateGrads) - Relaxed(minus, noise, gateGrads)) / (2 * eps);
        }
        return result;
    }

    // Σ_s Σ_l y_sl · G_sl with y the successive-softmax relaxation, written out in double.
    private static double Relaxed(double[] alpha, double[,] noise, float[] gateGrads)
    {
        double total = 0;
        for (int s = 0; s < Samples; s++)
        {
            var scores = Enumerable.Range(0, Layers).Select(l => alpha[l] + noise[s, l]).ToArray();
            var y = new double[Layers];
            for (int t = 0; t < Keep; t++)
            {
                double max = scores.Max(v => v / Tau);
                var e = scores.Select(v => Math.Exp(v / Tau - max)).ToArray();
                double sum = e.Sum();
                for (int l = 0; l < Layers; l++)
                {
                    double p = e[l] / sum;
                    y[l] += p;
                    scores[l] += Math.Log(Math.Max(1 - p, 1e-20));
                }
            }
            for (int l = 0; l < Layers; l++) total += y[l] * gateGrads[s * Layers + l];
        }
        return total;
    }
}
