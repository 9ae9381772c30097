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
        GpuStream stream = emu.Stream.Handle;
        using var kernels = new EntropyKdKernels(emu.Device);

        var zs = emu.Upload<float>(buffers, student);
        var zt = emu.Upload<float>(buffers, teacher);
        var stats = new KdTeacherStatistics(emu.Upload<float>(buffers, new float[rows]), emu.Upload<float>(buffers, new float[rows]),
            emu.Upload<float>(buffers, new float[rows]));
        kernels.TeacherPass(zt, vocab, rows, vocab, 0.5f, stats, stream);
        var entropy = emu.Download(stats.Entropy, rows).Select(h => (double)h).ToArray();
        var weights = TokenWeights.Compute(entropy, plan.Valid, options);
        var coefficients = new float[rows];
        var codes = new int[rows];
        for (int t = 0; t < rows; t++)
        {
            coefficients[t] = plan.Valid[t] ? (float)(0.6 * 4 * weights[t] / plan.ValidCount) : 0f;
            codes[t] = plan.Valid[t] ? plan.Labels[t] : -2;
        }
        var settings = new KdStudentRows(emu.Upload<float>(buffers, coefficients), emu.Upload<int>(buffers, codes), (float)plan.CeCoefficient, 0.5f,
            direction == KlDirection.Reverse, emu.Upload<float>(buffers, new float[rows]), emu.Upload<float>(buffers, new float[rows]));
        kernels.Dense(zs, vocab, zt, vocab, rows, vocab, stats, settings, stream);

        var grad = emu.Download(zs, rows * vocab);
        var kl = emu.Download(settings.RowKl, rows);
        var ce = emu.Download(settings.RowCe, rows);
        double loss = 0;
        for (int t = 0; t < rows; t++)
            if (codes[t] != -2) loss += coefficients[t] * (double)kl[t] + (codes[t] >= 0 ? plan.CeCoefficient * ce[t] : 0);
        Assert.True(KdTestData.RelativeError(loss, want.Loss) <= 3e-5, $"loss {loss} vs {want.Loss}");
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= 3e-5, $"gradient {KdTestData.RelativeError(grad, want.Gradient)}");
    }

    public void Dispose()
    {
        foreach (var b in buffers) b.Dispose();
        emu.Dispose();
    }
}
