using E3.Backends;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using E3.Tests.Reference;
using E3.Tests.Training;
using Xunit;
using Xunit.Abstractions;

namespace E3.Tests.GpuTraining;

/// <summary>
/// The whole <see cref="GatedDecoderTrainer"/> forward and backward on GpuBackend over the emulator against the CPU
/// backend, on small random Qwen3, Llama and Qwen2 models (3 layers, hidden ≤ 32, gates 1, 0 and 0.4), frozen and train,
/// with and without checkpointing, fp32 and bf16 weights: gate, input-embedding and every weight gradient.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class GpuTrainerParityTests(EmuFixture fixture, ITestOutputHelper output) : IDisposable
{
    // Both backends differentiate the same fp32 function with the same formulas; they differ in summation order only
    // (GEMM blocking, block/warp reductions, attention tiles), each step ~1e-7..1e-6 relative. Three layers, the final
    // norm and the head chain a few dozen such steps, and the gate gradients are dot products over every hidden value of
    // all tokens, so agreement is expected near 1e-6..1e-5 norm-wise; 1e-4 leaves a margin of ten while any wrong term,
    // scale or index is O(1) off.
    const double Bound = 1e-4;

    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    public static TheoryData<string, string, bool, bool, int, int> Cases() => new()
    {
        // model, mode, checkpointing, bf16 weights, batch, positions
        { "qwen3", nameof(TrainingMode.Train), false, false, 2, 7 },
        { "qwen3", nameof(TrainingMode.Frozen), true, true, 2, 7 },
        { "llama", nameof(TrainingMode.Train), true, false, 1, 17 }, // 17 positions: the attention tiles of 16 split
        { "qwen2", nameof(TrainingMode.Train), false, true, 2, 7 },
        { "qwen2", nameof(TrainingMode.Frozen), false, false, 2, 7 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void GradientsMatchTheCpuBackend(string modelType, string modeName, bool checkpointing, bool bf16, int batch, int positions)
    {
        var mode = Enum.Parse<TrainingMode>(modeName); // by name: the enum is internal to the engine
        using var c = new TrainingCase(modelType, tied: false, attentionBias: modelType == "llama", [1f, 0f, 0.4f], batch, positions,
            storage: bf16 ? ReferenceStorage.BF16 : ReferenceStorage.F32);
        var options = new TrainingOptions { Mode = mode, Checkpointing = checkpointing, ComputeDroppedLayers = true };
        var want = Run(new CpuBackend(2), c, options);
        var got = Run(new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false), c, options);
        Compare(want, got);

        if (mode != TrainingMode.Train) return;
        // Same seed and inputs give the same bits on the emulator (no atomics on the training path).
        var again = Run(new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false), c, options);
        Assert.Equal(got.Gates, again.Gates);
        Assert.Equal(got.Embeddings, again.Embeddings);
        foreach (var (name, values) in got.Weights) Assert.Equal(values, again.Weights[name]);
    }

    [Fact]
    public void APrunedModelTrainsItsRetainedLayersOnly()
    {
        // The distillation of a model pruned to layers {0, 2}: gate 0 on layer 1 in the forward, and no gradient buffers
        // for it; every other gradient is what the unpruned trainer computes.
        using var c = new TrainingCase("qwen3", tied: true, attentionBias: false, [1f, 0f, 1f]);
        var retained = LayerMask.Dropping(3, [1]);
        var pruned = new TrainingOptions { Mode = TrainingMode.Train, RetainedLayers = retained };
        var cpuPruned = Run(new CpuBackend(2), c, pruned);
        var cpuFull = Run(new CpuBackend(2), c, pruned with { RetainedLayers = null });
        Assert.NotEmpty(cpuPruned.Weights);
        Assert.DoesNotContain(cpuPruned.Weights.Keys, n => n.StartsWith("model.layers.1.", StringComparison.Ordinal));
        Assert.Contains(cpuFull.Weights.Keys, n => n.StartsWith("model.layers.1.", StringComparison.Ordinal));
        foreach (var (name, values) in cpuPruned.Weights) Assert.Equal(cpuFull.Weights[name], values);
        Assert.Equal(cpuFull.Gates[0], cpuPruned.Gates[0]);

        var emuPruned = Run(new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false), c, pruned);
        Compare(cpuPruned, emuPruned);

        using var backend = new CpuBackend(1);
        using var model = DecoderModel.Load(c.Folder, backend);
        var wrong = Assert.Throws<ArgumentException>(() => new GatedDecoderTrainer(model, pruned with { RetainedLayers = LayerMask.All(2) }));
        Assert.Contains("RetainedLayers has 2 gates; the model has 3 layers", wrong.Message);
        using var trainer = new GatedDecoderTrainer(model, pruned);
        var revived = Assert.Throws<ArgumentException>(() => trainer.Forward(c.Tokens, c.Batch, [1f, 0.5f, 1f]));
        Assert.Contains("gates[1] = 0.5, but layer 1 is dropped", revived.Message);
    }

    [Fact]
    public void ZeroingTheGradientsClearsWhatABackwardAccumulated()
    {
        using var c = new TrainingCase("qwen3", tied: true, attentionBias: false, [1f, 1f, 1f]);
        foreach (var backend in new IBackend[] { new CpuBackend(1), new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false) })
        {
            using (backend)
            using (var model = DecoderModel.Load(c.Folder, backend))
            using (var trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Train }))
            {
                trainer.Backward(c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates)));
                var embedding = trainer.WeightGradients[WeightNames.Embedding];
                var values = new float[embedding.ElementCount];
                backend.Download(embedding, values);
                Assert.Contains(values, v => v != 0f);
                trainer.ZeroWeightGradients();
                foreach (var (name, tensor) in trainer.WeightGradients)
                {
                    var zeros = new float[tensor.ElementCount];
                    backend.Download(tensor, zeros);
                    Assert.True(zeros.All(v => v == 0f), $"{backend.Name}: {name} not cleared");
                }
            }
        }
    }

    [Fact]
    public void ABf16BackendIsRefusedWhenTheTrainerIsMade()
    {
        using var c = new TrainingCase("qwen3", tied: true, attentionBias: false, [1f, 1f, 1f]);
        using var backend = new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.BF16, ownsDevice: false);
        using var model = DecoderModel.Load(c.Folder, backend);
        var error = Assert.Throws<NotSupportedException>(() => new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Train }));
        Assert.Contains("backend 'emu' keeps BF16 activations", error.Message);
    }

    sealed record Result(double[] Gates, float[] Embeddings, Dictionary<string, float[]> Weights);

    static Result Run(IBackend backend, TrainingCase c, TrainingOptions options)
    {
        using (backend)
        using (var model = DecoderModel.Load(c.Folder, backend))
        using (var trainer = new GatedDecoderTrainer(model, options))
        {
            var grads = trainer.Backward(c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates)));
            var weights = new Dictionary<string, float[]>();
            foreach (var (name, tensor) in trainer.WeightGradients)
            {
                var values = new float[tensor.ElementCount];
                backend.Download(tensor, values);
                weights[name] = values;
            }
            return new Result(grads.Gates, grads.InputEmbeddings, weights);
        }
    }

    /// <summary>
    /// <c>--tf32</c>: every GEMM over fp32 activations takes its operands rounded to TF32 (11 significant bits, a
    /// relative error of at most 2^-11 ≈ 4.9e-4 each, so about 1e-3 on each product). The gradients come through a
    /// chain of such GEMMs (three layers forward and back, the head), where errors of independent roundings add in
    /// quadrature and partly cancel: about 1e-3 norm-wise (0.7e-3 to 1.3e-3 here). 1e-2 leaves a margin of eight,
    /// while a GEMM that ignored the setting leaves the bits unchanged (checked below) and a wrong rounding is far off.
    /// </summary>
    [Fact]
    public void Tf32GemmsStayWithinTheirRoundingOfTheFp32Gradients()
    {
        using var c = new TrainingCase("qwen3", tied: false, attentionBias: false, [1f, 0f, 0.4f], 2, 7);
        var options = new TrainingOptions { Mode = TrainingMode.Train, ComputeDroppedLayers = true };
        var fp32 = Run(new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false), c, options);
        var tf32 = Run(new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false, fp32Compute: E3.Interop.Gpu.GemmCompute.FastTf32), c, options);
        Compare(fp32, tf32, 1e-2);
        Assert.Contains(tf32.Weights, w => !w.Value.SequenceEqual(fp32.Weights[w.Key])); // the rounding did happen
    }

    void Compare(Result want, Result got, double bound = Bound)
    {
        Assert.Equal(want.Gates.Select(double.IsNaN), got.Gates.Select(double.IsNaN));
        var gates = want.Gates.Where(g => !double.IsNaN(g)).Select(g => (float)g).ToArray();
        var gotGates = got.Gates.Where(g => !double.IsNaN(g)).Select(g => (float)g).ToArray();
        Check(gates, gotGates, "gates", bound);
        Check(want.Embeddings, got.Embeddings, "input embeddings", bound);
        Assert.Equal(want.Weights.Keys.Order(), got.Weights.Keys.Order());
        foreach (var (name, values) in want.Weights) Check(values, got.Weights[name], name, bound);
    }

    void Check(float[] want, float[] got, string what, double bound)
    {
        double diff = 0, norm = 0;
        for (int i = 0; i < want.Length; i++) { diff += ((double)got[i] - want[i]) * ((double)got[i] - want[i]); norm += (double)want[i] * want[i]; }
        output.WriteLine($"{what}: relative error {(norm == 0 ? 0 : Math.Sqrt(diff / norm)):E2}");
        GradientAssert.Close(want, got, bound, what);
    }

    public void Dispose() => _emu.Dispose();
}
