using E3.Backends;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary>
/// Greedy decoding on GpuBackend takes the argmax on the device (IArgMaxBackend): each step's id must be the
/// host argmax of the very logits the same session computes, for bf16 and fp32 activations, batched and not.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class GpuArgMaxDecodeTests : IDisposable
{
    const int Vocab = 96;
    readonly TempDir _dir = new("e3-argmax");
    readonly EmuDeviceScope _emu = new();

    public GpuArgMaxDecodeTests(EmuFixture fixture)
    {
        _ = fixture.Device;
        RandomModel.Write(new RandomModelSpec { Layers = 2, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 128, Vocab = Vocab, InitStd = 0.15f, Seed = 5 },
            _dir["model"]);
    }

    [Theory]
    [InlineData(DType.F32, 1)]
    [InlineData(DType.BF16, 1)]
    [InlineData(DType.BF16, 3)]
    public void DeviceArgMaxIsTheArgMaxOfTheSessionsLogits(DType activations, int batch)
    {
        using var backend = new E3.Backends.Gpu.GpuBackend(_emu.Device, activations, ownsDevice: false);
        using var model = DecoderModel.Load(_dir["model"], backend, WeightPrecision.F32);
        var mask = LayerMask.All(2);
        using var withLogits = model.StartSession(mask, batch, 16);
        using var withIds = model.StartSession(mask, batch, 16);
        int[] tokens = Enumerable.Range(0, batch * 4).Select(i => (i * 37 + 5) % Vocab).ToArray();
        for (int step = 0; step < 4; step++)
        {
            var logits = withLogits.Forward(tokens, LogitsMode.Last);
            var ids = withIds.ForwardArgMax(tokens);
            var want = Enumerable.Range(0, batch).Select(b => GreedyGenerator.ArgMax(logits.AsSpan(b * Vocab, Vocab))).ToArray();
            Assert.Equal(want, ids);
            tokens = ids; // both sessions continue with the same next tokens
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void HostAndDeviceArgMaxRankNaNsTiesAndInfinitiesAlike(DType activations)
    {
        float nan = float.NaN, inf = float.PositiveInfinity;
        // Each row with the index torch.argmax gives: NaN above every number (the first NaN wins), ties to the lower
        // index, -0 equal to +0. Every value is exact in bf16.
        (float[] Row, int Want)[] cases =
        [
            ([1, nan, 3, nan], 1),
            ([2, 5, 5, 1], 1),
            ([-inf, -inf, -inf, -inf], 0),
            ([1, inf, nan, inf], 2),
            ([nan, 0, 0, 0], 0),
            ([-1, -0f, 0f, -2], 1),
            ([-3, -2, inf, 4], 2),
        ];
        foreach (var (row, want) in cases) Assert.True(want == GreedyGenerator.ArgMax(row), $"host argmax of [{string.Join(", ", row)}]");

        using var pair = new BackendPair(_emu.Device, activations);
        var (_, logits) = pair.Activation(cases.SelectMany(c => c.Row).ToArray(), cases.Length, 4);
        var ids = new int[cases.Length];
        pair.Gpu.ArgMaxRows(logits, ids);
        Assert.Equal(cases.Select(c => c.Want), ids);
    }

    [Fact]
    public void GreedyGenerationOnTheGpuBackendFollowsItsOwnLogits()
    {
        // fp32 activations: the replay's prefill and the generation's decode steps then agree to ~1e-6, far below
        // the gaps between a random model's top logits, so both must pick the same ids.
        using var backend = new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false);
        using var model = DecoderModel.Load(_dir["model"], backend, WeightPrecision.F32);
        int[] prompt = [3, 14, 15, 92];
        var generated = GreedyGenerator.Generate(model, prompt, maxNew: 5);
        // Replaying the prompt plus the generated ids, each generated id must be the argmax after its prefix.
        var sequence = prompt.Concat(generated).ToArray();
        var logits = model.Forward(sequence, LayerMask.All(2));
        for (int i = 0; i < generated.Length; i++)
        {
            int position = prompt.Length - 1 + i;
            Assert.Equal(GreedyGenerator.ArgMax(logits.AsSpan(position * Vocab, Vocab)), generated[i]);
        }
    }

    public void Dispose()
    {
        _emu.Dispose();
        _dir.Dispose();
    }
}
