using E3.Backends;
using E3.Backends.Numerics;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary>
/// The host's draw (<see cref="TokenSampler"/>, used where a backend cannot draw on the device, the CPU's) is the
/// kernel's rule: token for token the same as <see cref="SamplingReference"/>, the scalar statement that the kernel
/// tests hold the kernel to, and the same as <c>GpuBackend.SampleRows</c> on the emulator for the same stored logits.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class TokenSamplerTests(EmuFixture fixture)
{
    public static TheoryData<float, int, float> Settings() => new()
    {
        { 1f, 0, 1f },      // the whole row
        { 0.7f, 1, 1f },    // top-1: the argmax
        { 1.5f, 5, 1f },
        { 1f, 64, 1f },
        { 0.9f, 0, 0.8f },  // top-p alone: the 64 best
        { 1.2f, 20, 0.5f },
    };

    static float[] Rows(int rows, int vocab, int seed)
    {
        var random = new Random(seed);
        var values = new float[rows * vocab];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 8 - 4);
        // Planted: a tie for the best (lowest index first), a row whose top is a run of equal values, and a row with NaN
        // (above every number), infinities and signed zeros, which the ordering rule must place as the kernel does.
        values[3] = values[vocab - 1] = 9f;
        if (rows > 1) values.AsSpan(vocab, Math.Min(vocab, 70)).Fill(5f);
        if (rows > 2)
        {
            int r2 = 2 * vocab;
            values[r2 + 1] = float.PositiveInfinity;
            values[r2 + 2] = float.NegativeInfinity;
            values[r2 + 4] = -0f;
            values[r2 + 5] = 0f;
            values[r2 + vocab / 2] = float.NaN;
        }
        return values;
    }

    [Theory]
    [MemberData(nameof(Settings))]
    public void TheHostDrawIsTheReferenceDrawForDraw(float temperature, int topK, float topP)
    {
        foreach (int vocab in new[] { 37, 300, 5000 })
        {
            var rows = Rows(3, vocab, vocab);
            for (long step = 0; step < 12; step++)
            {
                var settings = new SamplingSettings(temperature, topK, topP, Seed: 0x1234_5678_9UL + (ulong)vocab, Step: step);
                for (int r = 0; r < 3; r++)
                {
                    var row = rows.AsSpan(r * vocab, vocab);
                    int want = SamplingReference.Sample(row, 1f / temperature, topK, topP, settings.Seed, step, r);
                    Assert.Equal(want, TokenSampler.Sample(row, settings, r));
                }
            }
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void TheDeviceDrawsWhatTheHostDrawsFromTheSameStoredLogits(DType activations)
    {
        _ = fixture.Device;
        using var emu = new EmuDeviceScope();
        using var pair = new BackendPair(emu.Device, activations);
        const int rows = 4, vocab = 3001;
        var (cpu, gpu) = pair.Activation(Rows(rows, vocab, 7), rows, vocab); // bf16 activations: both hold the rounded values
        var stored = new float[rows * vocab];
        pair.Cpu.Download(cpu, stored);
        foreach (var (temperature, topK, topP) in new[] { (1f, 0, 1f), (0.8f, 10, 0.9f), (1.1f, 0, 0.7f) })
        {
            var settings = new SamplingSettings(temperature, topK, topP, Seed: 99, Step: 5);
            var got = new int[rows];
            pair.Gpu.SampleRows(gpu, settings, got);
            var want = Enumerable.Range(0, rows).Select(r => TokenSampler.Sample(stored.AsSpan(r * vocab, vocab), settings, r)).ToArray();
            Assert.Equal(want, got);
        }
    }
}
