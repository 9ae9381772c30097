using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Pruning.Distillation;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.Distillation;

/// <summary>
/// EntropyKdKernels, the typed wrapper, through EmuGpuDevice (IGpuDevice on the emulator): teacher pass, host
/// weights, fused student pass; against the float64 TorchSharp reference with the kernel bound of
/// <see cref="EntropyKdEmulatorTests"/> (3e-5, from fp32 per-thread sums of up to V/256 terms).
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class EntropyKdGpuDeviceTests(EmuFixture fixture) : IDisposable
{
    private readonly EmuDeviceScope emu = new();
    private readonly List<DeviceBuffer> buffers = [];

    [Theory]
    [InlineData(KlDirection.Forward)]
    [InlineData(KlDirection.Reverse)]
    public void WrapperRunsTheDenseLossOnTheEmulatedDevice(KlDirection direction)
    {
        _ = fixture.Device;
        const int rows = 6, vocab = 777;
        var options = new KdOptions { Direction = direction, Temperature = 2, KdFraction = 0.6 };
        var student = KdTestData.Logits(rows * vocab, 50);
        var teacher = KdTestData.Logits(rows * vocab, 51);
        var labels = KdTestData.Labels(rows, vocab, 52, 4);
        var want = TorchKdReference.Dense(student, vocab, teacher, vocab, rows, labels, options);
        var plan = KdPlan.Create(new DenseTeacher(teacher, rows, vocab), labels, vocab, options);
        var (loss, grad) = EmuDenseKd.Run(emu, buffers, student, teacher, vocab, rows, vocab, plan, options);
        Assert.True(KdTestData.RelativeError(loss, want.Loss) <= 3e-5, $"loss {loss} vs {want.Loss}");
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= 3e-5, $"gradient {KdTestData.RelativeError(grad, want.Gradient)}");
    }

    public void Dispose()
    {
        foreach (var b in buffers) b.Dispose();
        emu.Dispose();
    }
}
