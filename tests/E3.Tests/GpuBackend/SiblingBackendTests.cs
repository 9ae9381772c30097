using E3.Backends;
using E3.Backends.Cpu;
using E3.Backends.Numerics;
using E3.Tests.Emulator;
using Xunit;
using Gpu = E3.Backends.Gpu.GpuBackend;

namespace E3.Tests.GpuBackend;

/// <summary>
/// <see cref="Gpu.CreateSibling"/> and <see cref="Gpu.Reads"/>: a second backend on the same device, with other
/// activations, whose tensors the first reads where they are; what a bf16 distillation teacher beside an fp32 trainer
/// relies on.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class SiblingBackendTests(EmuFixture fixture) : IDisposable
{
    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    static readonly float[] Values = [1.5f, -2.25f, 3f, 0.125f];

    static float[] Download(IBackend backend, Tensor t)
    {
        var values = new float[t.ElementCount];
        backend.Download(t, values);
        return values;
    }

    [Fact]
    public void AnFp32BackendReadsItsBf16SiblingsTensorsWhereTheyAre()
    {
        using var trainer = new Gpu(_emu.Device, DType.F32, ownsDevice: false);
        using var sibling = trainer.CreateSibling(DType.BF16);
        Assert.Equal(DType.BF16, sibling.ActivationType);
        Assert.Same(trainer.Device, sibling.Device);
        using var own = trainer.Allocate(DType.F32, 2, 2);
        using var siblings = sibling.Allocate(DType.BF16, 2, 2);
        Assert.True(trainer.Reads(own));
        Assert.True(trainer.Reads(siblings));
        Assert.True(sibling.Reads(own));

        using var otherDevice = new EmuDeviceScope();
        using var elsewhere = new Gpu(otherDevice.Device, DType.BF16, ownsDevice: false);
        using var onOtherDevice = elsewhere.Allocate(DType.BF16, 2, 2);
        Assert.False(trainer.Reads(onOtherDevice));
        using var cpu = new CpuBackend(1);
        using var onCpu = cpu.Allocate(DType.F32, 2, 2);
        Assert.False(trainer.Reads(onCpu));
        var gone = sibling.Allocate(DType.BF16, 2);
        gone.Dispose();
        Assert.False(trainer.Reads(gone));

        var error = Assert.Throws<ArgumentException>(() => trainer.KdTeacherStatistics(onOtherDevice, 2, 1f, new float[2], new float[2], new float[2]));
        Assert.Contains("does not belong to this emu backend or a sibling on its device", error.Message);
    }

    [Theory]
    [InlineData(256)] // vector loads
    [InlineData(257)] // rows at odd offsets: scalar loads for most rows
    public void TheStatisticsOfASiblingsBf16LogitsAreThoseOfTheirWidenedValues(int vocab)
    {
        using var trainer = new Gpu(_emu.Device, DType.F32, ownsDevice: false);
        using var sibling = trainer.CreateSibling(DType.BF16);
        const int rows = 3;
        var logits = E3.Tests.Distillation.KdTestData.Logits(rows * vocab, 90 + vocab);
        BFloat16.Round(logits);
        using var asBf16 = sibling.Allocate(DType.BF16, rows, vocab);
        sibling.Upload(logits, asBf16);
        using var widened = trainer.Allocate(DType.F32, rows, vocab);
        trainer.Upload(logits, widened);

        float[] Statistics(Tensor t)
        {
            var all = new float[3 * rows];
            trainer.KdTeacherStatistics(t, vocab, 0.5f, all.AsSpan(0, rows), all.AsSpan(rows, rows), all.AsSpan(2 * rows, rows));
            return all;
        }
        // Widening bf16 is exact and both passes visit the same columns per thread: the same bits.
        var want = Statistics(widened);
        Assert.Equal(want.Select(BitConverter.SingleToInt32Bits), Statistics(asBf16).Select(BitConverter.SingleToInt32Bits));
        Assert.All(want, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void DisposingTheSiblingLeavesTheSharedDeviceWorking()
    {
        using var trainer = new Gpu(_emu.Device, DType.F32, ownsDevice: false);
        using (var sibling = trainer.CreateSibling(DType.BF16))
        {
            using var t = sibling.Allocate(DType.BF16, 4);
            sibling.Upload(Values.AsSpan(0, 4), t);
        }
        using var after = trainer.Allocate(DType.F32, Values.Length);
        trainer.Upload(Values, after);
        Assert.Equal(Values, Download(trainer, after));
    }

    public void Dispose() => _emu.Dispose();
}
