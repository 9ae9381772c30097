using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Model.Training;
using Xunit;

namespace E3.Tests.Training;

/// <summary>
/// Every gradient of <see cref="GatedDecoderTrainer"/> (weights, input embeddings, gates) against TorchSharp autograd
/// through the independent reference forward, on random Qwen3, Llama and Qwen2 models, both modes, with and without
/// checkpointing, with gates at 0, 1 and fractional values.
/// </summary>
public sealed class GradientParityTests
{
    // The bound: per tensor, ‖ours − reference‖ / ‖reference‖ ≤ 1e-4 in fp32. Both sides sum at most a few
    // hundred fp32 products per element (rows·hidden), whose rounding stays near 1e-6 relative; 1e-4 leaves room for
    // the different summation orders without hiding a wrong term, which shows as O(1) relative error.
    const double RelativeBound = 1e-4;

    static readonly float[] MixedGates = [1f, 0f, 0.4f];

    public static TheoryData<string, bool, bool, string, bool> Cases() => new()
    {
        { "qwen3", false, false, nameof(TrainingMode.Train), false },
        { "qwen3", true, false, nameof(TrainingMode.Frozen), false },
        { "qwen3", false, false, nameof(TrainingMode.Train), true },
        { "qwen3", false, false, nameof(TrainingMode.Frozen), true },
        { "llama", false, true, nameof(TrainingMode.Train), false },
        { "llama", true, false, nameof(TrainingMode.Train), true },
        { "llama", false, false, nameof(TrainingMode.Frozen), false },
        { "llama", false, true, nameof(TrainingMode.Frozen), true },
        { "qwen2", false, false, nameof(TrainingMode.Train), false },
        { "qwen2", true, false, nameof(TrainingMode.Train), true },
        { "qwen2", false, false, nameof(TrainingMode.Frozen), false },
        { "qwen2", false, false, nameof(TrainingMode.Frozen), true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void GradientsMatchTorchAutograd(string modelType, bool tied, bool attentionBias, string modeName, bool checkpointing)
    {
        var mode = Enum.Parse<TrainingMode>(modeName); // by name: the enum is internal to the engine
        using var c = new TrainingCase(modelType, tied, attentionBias, MixedGates);
        var expected = ReferenceGradients.Compute(c);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(c.Folder, backend);
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = mode, Checkpointing = checkpointing, ComputeDroppedLayers = true });
        var logits = trainer.Forward(c.Tokens, c.Batch, c.Gates);
        var grads = trainer.Backward(c.LossGradient(logits));

        AssertClose("gates", expected.Gates, grads.Gates);
        AssertClose("input embeddings", expected.InputEmbeddings.Select(x => (double)x).ToArray(), grads.InputEmbeddings.Select(x => (double)x).ToArray());
        if (mode == TrainingMode.Frozen)
        {
            Assert.Empty(trainer.WeightGradients);
            return;
        }

        Assert.Equal(expected.Weights.Keys.Order(), trainer.WeightGradients.Keys.Order());
        foreach (var (name, reference) in expected.Weights)
        {
            var ours = new float[reference.Length];
            backend.Download(trainer.WeightGradients[name], ours);
            AssertClose(name, reference.Select(x => (double)x).ToArray(), ours.Select(x => (double)x).ToArray());
        }
    }

    [Fact]
    public void Bf16WeightsGetFp32GradientsThatMatchAutograd()
    {
        // The reference upcasts the stored bf16 values exactly to fp32, so both sides differentiate the same fp32
        // function and the fp32 bound applies unchanged; gradients stay fp32 whatever the weight dtype.
        using var c = new TrainingCase("qwen3", false, false, MixedGates, storage: E3.Tests.Reference.ReferenceStorage.BF16);
        var expected = ReferenceGradients.Compute(c);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(c.Folder, backend);
        Assert.Equal(E3.Backends.DType.BF16, model.Weights.Layers[0].Q.DType);
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Train, ComputeDroppedLayers = true });
        var grads = trainer.Backward(c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates)));
        AssertClose("gates", expected.Gates, grads.Gates);
        foreach (var (name, reference) in expected.Weights)
        {
            var ours = new float[reference.Length];
            Assert.Equal(E3.Backends.DType.F32, trainer.WeightGradients[name].DType);
            backend.Download(trainer.WeightGradients[name], ours);
            AssertClose(name, reference.Select(x => (double)x).ToArray(), ours.Select(x => (double)x).ToArray());
        }
    }

    [Fact]
    public void BackwardFromTheHeadInputMatchesAutograd()
    {
        // A loss fused with the LM head hands over dL/d(normed hidden) = dL/dlogits · W_head; computed here in double
        // from the stored head, it must give the same gate and embedding gradients as the full backward.
        using var c = new TrainingCase("llama", false, false, MixedGates);
        var expected = ReferenceGradients.Compute(c);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(c.Folder, backend);
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Frozen, ComputeDroppedLayers = true });
        var dLogits = c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates));
        var head = new float[model.Weights.LmHead.ElementCount];
        backend.Download(model.Weights.LmHead, head);
        int v = c.Config.VocabSize, h = c.Config.HiddenSize;
        var dNormed = new float[c.Tokens.Length * h];
        for (int r = 0; r < c.Tokens.Length; r++)
            for (int k = 0; k < h; k++)
            {
                double sum = 0;
                for (int j = 0; j < v; j++) sum += (double)dLogits[r * v + j] * head[j * h + k];
                dNormed[r * h + k] = (float)sum;
            }
        var grads = trainer.BackwardFromHidden(dNormed);
        AssertClose("gates", expected.Gates, grads.Gates);
        AssertClose("input embeddings", expected.InputEmbeddings.Select(x => (double)x).ToArray(), grads.InputEmbeddings.Select(x => (double)x).ToArray());
    }

    [Fact]
    public void SkippedLayersReportNoGateGradientAndLeaveTheOthersUnchanged()
    {
        using var c = new TrainingCase("qwen3", false, false, MixedGates);
        var expected = ReferenceGradients.Compute(c);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(c.Folder, backend);
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Frozen, ComputeDroppedLayers = false });
        var grads = trainer.Backward(c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates)));
        Assert.True(double.IsNaN(grads.Gates[1]), $"gate 1 is 0 and was not computed, yet its gradient is {grads.Gates[1]}");
        AssertClose("gates 0 and 2", [expected.Gates[0], expected.Gates[2]], [grads.Gates[0], grads.Gates[2]]);
        AssertClose("input embeddings", expected.InputEmbeddings.Select(x => (double)x).ToArray(), grads.InputEmbeddings.Select(x => (double)x).ToArray());
    }

    [Fact]
    public void FreezePatternsAllocateOnlyTrainableGradients()
    {
        using var c = new TrainingCase("qwen2", false, false, MixedGates);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(c.Folder, backend);
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions
        {
            Mode = TrainingMode.Train,
            Freeze = ["model.embed_tokens.weight", "model.layers.*.mlp.*", "lm_head.weight"],
        });
        var names = trainer.WeightGradients.Keys.ToList();
        Assert.DoesNotContain(names, n => n.Contains(".mlp.") || n.StartsWith("model.embed") || n == "lm_head.weight");
        Assert.Contains("model.layers.2.self_attn.q_proj.bias", names);
        Assert.Contains("model.norm.weight", names);
    }

    internal static void AssertClose(string what, double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            diff += (expected[i] - actual[i]) * (expected[i] - actual[i]);
            norm += expected[i] * expected[i];
        }
        if (norm == 0)
        {
            // A layer behind a gate of 0 gets exactly zero gradient on both sides.
            Assert.True(diff == 0, $"{what}: reference gradient is zero but ours has norm {Math.Sqrt(diff)}");
            return;
        }
        double relative = Math.Sqrt(diff / norm);
        Assert.True(relative <= RelativeBound, $"{what}: relative error {relative:E3} > {RelativeBound:E0} (reference norm {Math.Sqrt(norm):E3})");
    }
}
