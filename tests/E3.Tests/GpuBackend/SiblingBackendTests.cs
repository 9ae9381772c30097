using E3.Backends;
using E3.Backends.Cpu;
using E3.Backends.Numerics;
using E3.Tests.Emulator;
using Xunit;
using Gpu = E3.Backends.Gpu.GpuBackend;

namespace E3.Tests.GpuBackend;

/// <summary>
/// <see cref="Gpu.CreateSibling"/> and <see cref="Gpu.TryImport"/>: a second backend on the same device, with other
/// activations, whose tensors the first reads on the device; what a bf16 distillation teacher beside an fp32 trainer
/// relies on. The conversions are checked bit for bit against the host's <see cref="BFloat16"/>, itself tested against
/// TorchSharp.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class SiblingBackendTests(EmuFixture fixture) : IDisposable
{
    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    // Values that bf16 does not hold, a tie that rounds to even, and a negative zero.
    static readonly float[] Values = [1.00390625f, 1.01171875f, -3.14159265f, 65504.5f, 1e-30f, -0f, 0.1f, 7f, 1234.567f, -2.5e-3f, 3f, -1e20f];

    static float[] Download(IBackend backend, Tensor t)
    {
        var values = new float[t.ElementCount];
        backend.Download(t, values);
        return values;
    }

    static float[] RoundedToBf16(float[] values)
    {
        var bits = new ushort[values.Length];
        var back = new float[values.Length];
        BFloat16.FromSingle(values, bits);
        BFloat16.ToSingle(bits, back);
        return back;
    }

    [Fact]
    public void AnFp32BackendImportsItsBf16SiblingsTensorsExactlyWidened()
    {
        using var trainer = new Gpu(_emu.Device, DType.F32, ownsDevice: false);
        using var sibling = trainer.CreateSibling(DType.BF16);
        Assert.Equal(DType.BF16, sibling.ActivationType);
        Assert.Same(trainer.Device, sibling.Device);

        using var source = sibling.Allocate(DType.BF16, 3, 4);
        sibling.Upload(Values, source);
        using var imported = trainer.TryImport(source);
        Assert.NotNull(imported);
        Assert.Equal(DType.F32, imported.DType);
        Assert.Equal(source.Shape, imported.Shape);
        // bf16 → fp32 is exact, so the device conversion must give the host's rounding bit for bit.
        Assert.Equal(RoundedToBf16(Values).Select(BitConverter.SingleToInt32Bits), Download(trainer, imported).Select(BitConverter.SingleToInt32Bits));
        Assert.NotEqual(Values, Download(trainer, imported)); // rounding really happened
    }

    [Fact]
    public void ABf16BackendImportsFp32TensorsRoundedAsTheHostRounds()
    {
        using var trainer = new Gpu(_emu.Device, DType.F32, ownsDevice: false);
        using var sibling = trainer.CreateSibling(DType.BF16);
        using var source = trainer.Allocate(DType.F32, Values.Length);
        trainer.Upload(Values, source);
        using var imported = sibling.TryImport(source);
        Assert.NotNull(imported);
        Assert.Equal(DType.BF16, imported.DType);
        Assert.Equal(RoundedToBf16(Values).Select(BitConverter.SingleToInt32Bits), Download(sibling, imported).Select(BitConverter.SingleToInt32Bits));

        // The same dtype on both sides is a copy, and a backend may import from itself.
        using var copy = trainer.TryImport(source);
        Assert.Equal(Values.Select(BitConverter.SingleToInt32Bits), Download(trainer, copy!).Select(BitConverter.SingleToInt32Bits));
        using var empty = sibling.Allocate(DType.BF16, 0, 5);
        using var importedEmpty = trainer.TryImport(empty);
        Assert.Equal(new[] { 0, 5 }, importedEmpty!.Shape);
    }

    [Fact]
    public void TensorsOfAnotherDeviceOrBackendKindAreNotImported()
    {
        using var trainer = new Gpu(_emu.Device, DType.F32, ownsDevice: false);
        using var otherDevice = new EmuDeviceScope();
        using var elsewhere = new Gpu(otherDevice.Device, DType.BF16, ownsDevice: false);
        using var onOtherDevice = elsewhere.Allocate(DType.BF16, 2, 2);
        Assert.Null(trainer.TryImport(onOtherDevice));

        using var cpu = new CpuBackend(1);
        using var onCpu = cpu.Allocate(DType.F32, 2, 2);
        Assert.Null(trainer.TryImport(onCpu));
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
