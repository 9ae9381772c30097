using E3.Backends;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Emulator;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The whole decoder on GpuBackend over the emulator against the CPU forward, on a random Qwen3 model (q/k norms,
/// GQA): logits under masks that drop layers or hold a fractional gate, KV-cached decode, and greedy generation.
/// fp32 weights and activations, so the two differ only by fp32 summation order.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class GpuDecoderParityTests : IDisposable
{
    // Projections with std 0.15 on hidden 64 give logits of order 1; each backend is within a few 1e-6 of the exact
    // forward per layer (fp32 GEMMs of K ≤ 128 and norms, see GpuBackendOpTests), which four layers and the LM head
    // amplify to ~1e-5 at most: 1e-4 absolute on logits of order 1 leaves a factor of ten.
    const double LogitTolerance = 1e-4;

    const int Layers = 4;

    readonly TempDir _dir = new("e3-gpub");
    readonly EmuDeviceScope _emu = new();
    readonly CpuBackend _cpuBackend = new(threads: 1);
    readonly E3.Backends.Gpu.GpuBackend _gpuBackend;
    readonly DecoderModel _cpu, _gpu;

    public GpuDecoderParityTests(EmuFixture fixture)
    {
        _ = fixture.Device;
        var spec = new RandomModelSpec { Layers = Layers, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 128, Vocab = 96, InitStd = 0.15f, Seed = 3 };
        RandomModel.Write(spec, _dir["model"]);
        _gpuBackend = new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false);
        _cpu = DecoderModel.Load(_dir["model"], _cpuBackend, WeightPrecision.F32);
        _gpu = DecoderModel.Load(_dir["model"], _gpuBackend, WeightPrecision.F32);
    }

    public static TheoryData<float[]> Masks() => new()
    {
        new float[] { 1, 1, 1, 1 },
        new float[] { 1, 0, 1, 0 },
        new float[] { 0, 1, 0, 0 },
        new float[] { 1, 0.5f, 0, 0.25f },
    };

    static readonly int[] Prompt = [5, 17, 42, 3, 88, 60, 9, 31];

    [Theory, MemberData(nameof(Masks))]
    public void LogitsMatchTheCpuForward(float[] gates)
    {
        var mask = new LayerMask(gates);
        var want = _cpu.Forward(Prompt, mask);
        var got = _gpu.Forward(Prompt, mask);
        Assert.Equal(Prompt.Length * 96, got.Length);
        Approx.Close(want, got, 0, LogitTolerance, $"logits, mask [{string.Join(", ", gates)}]");
        // The logits must actually depend on the mask, or the comparison above would prove little.
        if (gates.Contains(0f)) Assert.True(MaxDifference(want, _cpu.Forward(Prompt)) > 100 * LogitTolerance);
    }

    [Fact]
    public void KvCachedDecodeMatchesTheCpuSession()
    {
        var mask = new LayerMask([1, 0, 1, 1]);
        using var cpu = _cpu.StartSession(mask, batch: 2, capacity: 8);
        using var gpu = _gpu.StartSession(mask, batch: 2, capacity: 8);
        int[] prefill = [5, 17, 42, 3, 88, 60, 9, 31, 2, 77]; // two sequences of five
        Approx.Close(cpu.Forward(prefill, LogitsMode.Last), gpu.Forward(prefill, LogitsMode.Last), 0, LogitTolerance, "prefill");
        foreach (int[] step in new[] { new[] { 11, 12 }, new[] { 40, 1 }, new[] { 7, 7 } })
            Approx.Close(cpu.Forward(step, LogitsMode.All), gpu.Forward(step, LogitsMode.All), 0, LogitTolerance, $"decode at {cpu.Position}");
        Assert.Equal(8, gpu.Position);
    }

    [Fact]
    public void GreedyGenerationGivesTheSameTokens()
    {
        var mask = new LayerMask([1, 1, 0, 1]);
        var want = GreedyGenerator.Generate(_cpu, Prompt.AsSpan(0, 4), maxNew: 6, mask);
        var got = GreedyGenerator.Generate(_gpu, Prompt.AsSpan(0, 4), maxNew: 6, mask);
        Assert.Equal(6, want.Length);
        Assert.Equal(want, got);
    }

    [Fact]
    public void SampledGenerationGivesTheSameTokens()
    {
        // The device draws in kernels/sampling.cu, the CPU on the host by the same rule and noise: with fp32 logits that
        // agree to ~1e-5, a seeded run picks the same tokens (a flip would need two Gumbel scores that close).
        var mask = new LayerMask([1, 0, 1, 1]);
        foreach (var sampling in new[]
        {
            new SamplingOptions { Temperature = 1.3f, Seed = 11 },
            new SamplingOptions { Temperature = 0.8f, TopK = 7, TopP = 0.9f, Seed = 12 },
        })
        {
            var want = Generator.Generate(_cpu, Prompt.AsSpan(0, 4), maxNew: 8, sampling, mask);
            var got = Generator.Generate(_gpu, Prompt.AsSpan(0, 4), maxNew: 8, sampling, mask);
            Assert.Equal(want, got);
        }
    }

    static double MaxDifference(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();

    public void Dispose()
    {
        _gpu.Dispose();
        _cpu.Dispose();
        _gpuBackend.Dispose();
        _cpuBackend.Dispose();
        _emu.Dispose();
        _dir.Dispose();
    }
}
