using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Tests.Reference;
using TorchSharp;
using Xunit;

namespace E3.Tests.Training;

/// <summary>
/// Gate gradients against central finite differences of the loss computed by the float64 reference forward, and
/// run-to-run bit identity of every gradient.
/// </summary>
public sealed class GateFiniteDifferenceTests
{
    [Theory]
    [InlineData("qwen3")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void GateGradientsMatchCentralDifferencesOfTheFloat64Reference(string modelType)
    {
        using var c = new TrainingCase(modelType, false, false, [0.7f, 0f, 1f]);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(c.Folder, backend);
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions { ComputeDroppedLayers = true, Checkpointing = true });
        var ours = trainer.Backward(c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates))).Gates;

        using var reference = ReferenceCheckpoint.Load(c.Folder, torch.ScalarType.Float64);
        var tokens = new long[c.Batch, c.Positions];
        for (int i = 0; i < c.Tokens.Length; i++) tokens[i / c.Positions, i % c.Positions] = c.Tokens[i];
        var differences = new double[c.Gates.Length];
        for (int l = 0; l < c.Gates.Length; l++)
        {
            // ε = 1e-3: the float64 loss is smooth in the gate, so the central difference's truncation error is
            // O(ε²·L''') ≈ 1e-6 relative and its rounding error ~1e-16/ε = 1e-13, both far below the fp32 bound.
            var plus = (float[])c.Gates.Clone();
            var minus = (float[])c.Gates.Clone();
            plus[l] += 1e-3f;
            minus[l] -= 1e-3f;
            differences[l] = (LossAt(reference, tokens, plus, c) - LossAt(reference, tokens, minus, c)) / ((double)plus[l] - minus[l]);
        }
        // Our analytic gradient is fp32 end to end; the same norm-wise 1e-4 bound as against autograd.
        GradientParityTests.AssertClose($"{modelType} gates vs finite differences", differences, ours);
    }

    static double LossAt(ReferenceCheckpoint reference, long[,] tokens, float[] gates, TrainingCase c)
    {
        using var logits = TorchReferenceDecoder.Forward(reference, tokens, gates, torch.ScalarType.Float64);
        return c.Loss(logits.reshape(-1).data<double>().ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SameInputsGiveBitIdenticalGradientsRunToRun(bool checkpointing)
    {
        using var c = new TrainingCase("qwen3", true, false, [1f, 0.3f, 0f], batch: 2, positions: 12);
        var first = Run(c, checkpointing);
        var second = Run(c, checkpointing);
        Assert.Equal(first.Keys, second.Keys);
        foreach (var (name, values) in first)
            Assert.True(values.SequenceEqual(second[name]), $"{name} differs between two identical runs");
    }

    static Dictionary<string, float[]> Run(TrainingCase c, bool checkpointing)
    {
        using var backend = new CpuBackend(4);
        using var model = DecoderModel.Load(c.Folder, backend);
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Train, Checkpointing = checkpointing, ComputeDroppedLayers = true });
        var grads = trainer.Backward(c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates)));
        var result = trainer.WeightGradients.ToDictionary(kv => kv.Key, kv =>
        {
            var values = new float[kv.Value.ElementCount];
            backend.Download(kv.Value, values);
            return values;
        });
        result["gates"] = grads.Gates.Select(g => (float)g).ToArray();
        result["input"] = grads.InputEmbeddings;
        return result;
    }
}
