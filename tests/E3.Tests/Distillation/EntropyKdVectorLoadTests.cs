using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Pruning.Distillation;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.Distillation;

/// <summary>
/// entropy_kd.cu reads 4 columns per load when a row starts 16-byte (fp32) or 8-byte (bf16) aligned, then the
/// vocab % 4 tail one by one, and falls back to scalar loads for a misaligned row. Every combination must give the
/// float64 TorchSharp reference's loss and gradient: aligned rows with V % 4 == 0 (all vector), aligned rows with a
/// tail, and a row stride ld = V + 1 that leaves most rows misaligned (odd and even V). The padding column of a
/// wider row must come back with zero gradient.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class EntropyKdVectorLoadTests(EmuFixture fixture) : IDisposable
{
    // The kernel bound of EntropyKdEmulatorTests: fp32 per-thread sums of up to V/256 terms plus __expf, 3e-5.
    private const double Fp32Tolerance = 3e-5;
    private readonly EmuDeviceScope emu = new();
    private readonly List<DeviceBuffer> buffers = [];

    [Theory]
    [InlineData(1024, 1024)] // every row aligned, no tail
    [InlineData(1023, 1024)] // aligned rows, a 3-column tail
    [InlineData(1021, 1021)] // V not divisible by 4, rows at odd offsets
    [InlineData(1024, 1025)] // misaligned row stride
    [InlineData(1023, 1025)]
    public void DenseLossAndGradientDoNotDependOnTheRowLayout(int vocab, int ld)
    {
        _ = fixture.Device;
        const int rows = 5;
        var options = new KdOptions { Temperature = 2, KdFraction = 0.7 };
        var student = KdTestData.Logits(rows * vocab, 60 + vocab);
        var teacher = KdTestData.Logits(rows * vocab, 61 + vocab);
        var labels = KdTestData.Labels(rows, vocab, 62, 4);
        var want = TorchKdReference.Dense(student, vocab, teacher, vocab, rows, labels, options);
        var plan = KdPlan.Create(new DenseTeacher(teacher, rows, vocab), labels, vocab, options);
        // Rows ld apart; the padding columns hold values that would dominate any softmax they leaked into.
        var (loss, strided) = EmuDenseKd.Run(emu, buffers, Strided(student, rows, vocab, ld), Strided(teacher, rows, vocab, ld), ld, rows, vocab, plan, options);
        var grad = new float[rows * vocab];
        for (int t = 0; t < rows; t++)
        {
            strided.AsSpan(t * ld, vocab).CopyTo(grad.AsSpan(t * vocab));
            for (int c = vocab; c < ld; c++) Assert.Equal(0f, strided[t * ld + c]);
        }
        Assert.True(KdTestData.RelativeError(loss, want.Loss) <= Fp32Tolerance, $"loss {loss} vs {want.Loss}");
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= Fp32Tolerance, $"gradient {KdTestData.RelativeError(grad, want.Gradient)}");
    }

    [Theory]
    [InlineData(1024, 1024, KlDirection.Forward)]
    [InlineData(1023, 1024, KlDirection.Reverse)]
    [InlineData(1021, 1021, KlDirection.Forward)]
    [InlineData(1024, 1025, KlDirection.Reverse)]
    [InlineData(1023, 1025, KlDirection.Forward)]
    public void ABf16TeacherGivesTheBitsOfItsWidenedFp32Values(int vocab, int ld, KlDirection direction)
    {
        // An fp32 student against bf16 teacher logits (a distillation teacher on the bf16 inference path) reads them
        // as they are; widening bf16 to fp32 is exact, and a bf16 row is vector-aligned exactly when the fp32 row is,
        // so every thread sums the same values in the same order as the fp32 pass on the widened teacher.
        _ = fixture.Device;
        const int rows = 5;
        var options = new KdOptions { Temperature = 2, KdFraction = 0.7, Direction = direction };
        var student = Strided(KdTestData.Logits(rows * vocab, 80 + vocab), rows, vocab, ld);
        var teacher = Strided(KdTestData.Logits(rows * vocab, 81 + vocab), rows, vocab, ld);
        E3.Backends.Numerics.BFloat16.Round(teacher);
        var packed = new float[rows * vocab];
        for (int t = 0; t < rows; t++) teacher.AsSpan(t * ld, vocab).CopyTo(packed.AsSpan(t * vocab));
        var labels = KdTestData.Labels(rows, vocab, 82, 4);
        var plan = KdPlan.Create(new DenseTeacher(packed, rows, vocab), labels, vocab, options);
        var widened = EmuDenseKd.Run(emu, buffers, student, teacher, ld, rows, vocab, plan, options);
        var asBf16 = EmuDenseKd.Run(emu, buffers, student, teacher, ld, rows, vocab, plan, options, bf16Teacher: true);
        Assert.Equal(widened.Loss, asBf16.Loss);
        Assert.Equal(widened.Gradient.Select(BitConverter.SingleToInt32Bits), asBf16.Gradient.Select(BitConverter.SingleToInt32Bits));
        Assert.Contains(asBf16.Gradient, g => g != 0);
    }

    [Theory]
    [InlineData(1024, 1024)]
    [InlineData(1022, 1022)] // bf16 rows 2044 bytes apart: every other row 8-byte aligned, a 2-column tail
    [InlineData(1024, 1027)]
    public void Bf16TeacherStatisticsDoNotDependOnTheRowLayout(int vocab, int ld)
    {
        _ = fixture.Device;
        const int rows = 6;
        var teacher = KdTestData.Logits(rows * vocab, 70 + ld);
        var bits = Strided(teacher, rows, vocab, ld).Select(v => new Bf16((ushort)(BitConverter.SingleToUInt32Bits(v) >> 16))).ToArray();
        using var kernels = new EntropyKdKernels(emu.Device);
        var stats = new KdTeacherStatistics(Zeros(rows), Zeros(rows), Zeros(rows));
        kernels.TeacherPass(emu.Upload<Bf16>(buffers, bits), ld, rows, vocab, 1f, stats, emu.Stream.Handle);
        var max = emu.Download(stats.Max, rows);
        var logSum = emu.Download(stats.LogSum, rows);
        for (int t = 0; t < rows; t++)
        {
            // The exact statistics of the stored (truncated) bf16 values, in double.
            var row = Enumerable.Range(0, vocab).Select(c => (double)BitConverter.UInt32BitsToSingle((uint)bits[t * ld + c].Bits << 16)).ToArray();
            double m = row.Max();
            double s = row.Sum(z => Math.Exp(z - m));
            Assert.Equal(m, max[t]); // a max is exact whatever the load width
            // fp32 sums of V/256 terms per thread and __expf: the same 3e-5 bound, relative to log S (~ln V).
            Assert.True(Math.Abs(logSum[t] - Math.Log(s)) <= Fp32Tolerance * Math.Log(s), $"row {t}: log-sum {logSum[t]} vs {Math.Log(s)}");
        }
    }

    private static float[] Strided(float[] packed, int rows, int vocab, int ld)
    {
        var result = new float[rows * ld];
        Array.Fill(result, 1e4f);
        for (int t = 0; t < rows; t++) packed.AsSpan(t * vocab, vocab).CopyTo(result.AsSpan(t * ld));
        return result;
    }

    private DevicePointer<float> Zeros(int count) => emu.Upload<float>(buffers, new float[count]);

    public void Dispose()
    {
        foreach (var b in buffers) b.Dispose();
        emu.Dispose();
    }
}
