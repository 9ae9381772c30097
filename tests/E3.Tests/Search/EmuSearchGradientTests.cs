using E3.Backends;
using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Search;
using E3.Tests.Distillation;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Search;

/// <summary>
/// A search step and the drop-one-layer KL on GpuBackend over the emulator, where the teacher's logits stay on the
/// device and each KD loss runs fused with the LM head there, against the same on the CPU backend, where both are
/// dense host logits.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class EmuSearchGradientTests(EmuFixture fixture) : IDisposable
{
    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    [Fact]
    public void AStepGivesTheCpuBackendsMasksLossAndAlphaGradient()
    {
        using var dir = new TempDir();
        string folder = SearchModels.Write(dir, "model", layers: 5, weakLayers: [2]);
        var (_, ids) = SearchModels.Tokens(dir, "data.bin", 2000);
        var options = new SearchOptions { Keep = 3, Steps = 4, Samples = 3, Init = AlphaInit.Uniform, Seed = 9 };
        float[] alpha = [0.3f, -0.2f, 0.1f, 0.05f, -0.4f];
        var want = Step(new CpuBackend(2), folder, ids, options, alpha);
        var got = Step(new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false), folder, ids, options, alpha);

        Assert.Equal(want.HardMasks, got.HardMasks); // the noise is keyed by seed and step, not by backend
        // The loss is a KL formed from terms of size log V, so its rounding error is absolute, ~ε·log V per row (1e-6 with room);
        // the gradients differ by summation order only, as in GpuTrainerParityTests (1e-4 norm-wise).
        Assert.True(Math.Abs(got.Loss - want.Loss) <= 1e-6, $"loss {got.Loss} vs {want.Loss}");
        Assert.True(KdTestData.RelativeError(got.GateGradients, want.GateGradients) <= 1e-4,
            $"gate gradients {KdTestData.RelativeError(got.GateGradients, want.GateGradients):E3}");
        Assert.True(KdTestData.RelativeError(got.AlphaGradient, want.AlphaGradient) <= 1e-4,
            $"alpha gradient {KdTestData.RelativeError(got.AlphaGradient, want.AlphaGradient):E3}");
        Assert.Contains(want.AlphaGradient, g => Math.Abs(g) > 1e-7f);
    }

    [Fact]
    public void DropOneKlMatchesTheCpuBackend()
    {
        // The search's initial α and its final swap refinement: each gated model's KL to the full one, fused with the LM
        // head on the device. Each KL is built from terms of size log V, so its rounding error is absolute, ~1e-7.
        using var dir = new TempDir();
        string folder = SearchModels.Write(dir, "model", layers: 5, weakLayers: [1, 3]);
        var (_, ids) = SearchModels.Tokens(dir, "data.bin", 400);
        var batches = new List<int[]> { ids.AsSpan(0, 48).ToArray(), ids.AsSpan(100, 48).ToArray() };
        double[] Kl(IBackend backend)
        {
            using (backend)
            using (var model = DecoderModel.Load(folder, backend))
            using (var trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Frozen }))
                return LayerImportance.DropOneKl(model, trainer, batches, batchSize: 2);
        }
        var want = Kl(new CpuBackend(2));
        var got = Kl(new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false));
        for (int l = 0; l < want.Length; l++)
            Assert.True(Math.Abs(got[l] - want[l]) <= 1e-6, $"layer {l}: {got[l]} on emu, {want[l]} on cpu");
        Assert.Equal(Enumerable.Range(0, 5).OrderBy(l => want[l]), Enumerable.Range(0, 5).OrderBy(l => got[l]));
        Assert.True(want.Max() > 1e-4, "the KLs must be large enough for the comparison to mean something");
    }

    static SearchGradient Step(IBackend backend, string folder, int[] ids, SearchOptions options, float[] alpha)
    {
        using (backend)
        {
            using var model = DecoderModel.Load(folder, backend);
            using var search = new MaskSearch(model, new LiveTeacherBatches(ids, 24, 2, options.Seed, "data.bin"), options);
            return search.Gradient(alpha, step: 1);
        }
    }

    public void Dispose() => _emu.Dispose();
}
