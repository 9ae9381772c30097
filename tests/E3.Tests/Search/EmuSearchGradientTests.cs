using E3.Backends;
using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Pruning.Search;
using E3.Tests.Distillation;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Search;

/// <summary>
/// A search step on GpuBackend over the emulator, where the teacher's logits stay on the device and each sample's KD
/// loss runs fused with the LM head there, against the same step on the CPU backend, where both are dense host logits.
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
