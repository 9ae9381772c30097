using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Pruning.Distillation;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;
using static E3.Backends.Numerics.BFloat16;

namespace E3.Tests.Distillation;

/// <summary>
/// bf16 accuracy of the KD loss by flash-attention's criterion: on bf16-rounded student and teacher logits,
/// the loss and the gradient (itself rounded to bf16, as the bf16 paths write it) may be at most twice as far
/// from the float64 reference as TorchSharp's composite computed in bf16 on the same inputs. Checked for the CPU
/// loss (dense and sparse teacher; the dense forward case is also in <see cref="EntropyKdLossTests"/>) and for
/// e3_kd_dense_bf16 / e3_kd_sparse_bf16 through <see cref="EntropyKdKernels"/> on the emulated device.
/// Errors are max |diff| over max |reference| (KdTestData.RelativeError).
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class KdBf16AccuracyTests(EmuFixture fixture, Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private const int Rows = 8, Vocab = 5000, TopK = 16;
    private readonly EmuDeviceScope emu = new();
    private readonly List<DeviceBuffer> buffers = [];

    public static TheoryData<KlDirection, double, double> Settings() => new()
    {
        { KlDirection.Forward, 2.0, 0.7 },
        { KlDirection.Reverse, 1.0, 1.0 },
    };

    [Theory]
    [MemberData(nameof(Settings))]
    public void DenseBf16IsNoWorseThanTwiceTorchBf16(KlDirection direction, double tau, double lambda)
    {
        var options = new KdOptions { Direction = direction, Temperature = tau, KdFraction = lambda };
        var (student, teacher, labels) = Inputs(60);
        var exact = TorchKdReference.Dense(student, Vocab, teacher, Vocab, Rows, labels, options);
        var torchBf16 = TorchKdReference.Dense(student, Vocab, teacher, Vocab, Rows, labels, options, TorchSharp.torch.ScalarType.BFloat16);

        var cpuBits = ToBits(student);
        var cpu = EntropyKdLoss.Compute(cpuBits.AsSpan(), Vocab, new DenseTeacher(ToBits(teacher), Rows, Vocab), labels, options);
        AssertCriterion(exact, torchBf16, cpu.Loss, FromBits(cpuBits), "cpu dense");

        var (emuLoss, emuGrad) = EmuDense(student, teacher, labels, options);
        AssertCriterion(exact, torchBf16, emuLoss, emuGrad, "emu e3_kd_dense_bf16");
    }

    [Theory]
    [MemberData(nameof(Settings))]
    public void SparseBf16IsNoWorseThanTwiceTorchBf16(KlDirection direction, double tau, double lambda)
    {
        var options = new KdOptions { Direction = direction, Temperature = tau, KdFraction = lambda };
        var (student, teacherLogits, labels) = Inputs(70);
        var (indices, logProbs) = KdTestData.TopK(teacherLogits, Rows, Vocab, TopK);
        var teacher = new SparseTeacher(indices, logProbs, Rows, TopK, Vocab);
        var exact = TorchKdReference.Sparse(student, Vocab, indices, logProbs, TopK, Rows, labels, options);
        var torchBf16 = TorchKdReference.Sparse(student, Vocab, indices, logProbs, TopK, Rows, labels, options, TorchSharp.torch.ScalarType.BFloat16);

        var cpuBits = ToBits(student);
        var cpu = EntropyKdLoss.Compute(cpuBits.AsSpan(), Vocab, teacher, labels, options);
        AssertCriterion(exact, torchBf16, cpu.Loss, FromBits(cpuBits), "cpu sparse");

        var plan = KdPlan.Create(teacher, labels, Vocab, options);
        var settings = StudentRows(plan, plan.Entropy, options);
        var zs = emu.Upload(buffers, ToBits(student).Select(b => new Bf16(b)).ToArray());
        using var kernels = new EntropyKdKernels(emu.Device);
        kernels.Sparse(zs, Vocab, Rows, Vocab, emu.Upload<int>(buffers, indices), emu.Upload<float>(buffers, plan.BucketLogProbs!.Select(x => (float)x).ToArray()),
            TopK, settings, emu.Stream.Handle);
        AssertCriterion(exact, torchBf16, EmuLoss(plan, settings), DownloadBf16(zs), "emu e3_kd_sparse_bf16");
    }

    private (double Loss, float[] Grad) EmuDense(float[] student, float[] teacher, int[] labels, KdOptions options)
    {
        using var kernels = new EntropyKdKernels(emu.Device);
        var zs = emu.Upload(buffers, ToBits(student).Select(b => new Bf16(b)).ToArray());
        var zt = emu.Upload(buffers, ToBits(teacher).Select(b => new Bf16(b)).ToArray());
        var stats = new KdTeacherStatistics(emu.Upload<float>(buffers, new float[Rows]), emu.Upload<float>(buffers, new float[Rows]),
            emu.Upload<float>(buffers, new float[Rows]));
        kernels.TeacherPass(zt, Vocab, Rows, Vocab, (float)(1 / options.Temperature), stats, emu.Stream.Handle);
        // The host turns the kernel's entropies into weights, as the GPU driver does.
        var plan = KdPlan.Create(new DenseTeacher(teacher, Rows, Vocab), labels, Vocab, options);
        var settings = StudentRows(plan, emu.Download(stats.Entropy, Rows).Select(h => (double)h).ToArray(), options);
        kernels.Dense(zs, Vocab, zt, Vocab, Rows, Vocab, stats, settings, emu.Stream.Handle);
        return (EmuLoss(plan, settings), DownloadBf16(zs));
    }

    // λτ²w_t/N per row and the kernel's label codes (-2 ignored, -1 no CE), with fresh per-row outputs.
    private KdStudentRows StudentRows(KdPlan plan, double[] entropy, KdOptions options)
    {
        var weights = TokenWeights.Compute(entropy, plan.Valid, options);
        var coefficients = new float[Rows];
        var codes = new int[Rows];
        for (int t = 0; t < Rows; t++)
        {
            coefficients[t] = plan.Valid[t] ? (float)(options.KdFraction * options.Temperature * options.Temperature * weights[t] / plan.ValidCount) : 0f;
            codes[t] = plan.Valid[t] ? plan.Labels[t] : -2;
        }
        return new KdStudentRows(emu.Upload<float>(buffers, coefficients), emu.Upload<int>(buffers, codes), (float)plan.CeCoefficient,
            (float)(1 / options.Temperature), options.Direction == KlDirection.Reverse, emu.Upload<float>(buffers, new float[Rows]),
            emu.Upload<float>(buffers, new float[Rows]));
    }

    private double EmuLoss(KdPlan plan, KdStudentRows settings)
    {
        var coefficients = emu.Download(settings.KdCoefficient, Rows);
        var codes = emu.Download(settings.Labels, Rows);
        var kl = emu.Download(settings.RowKl, Rows);
        var ce = emu.Download(settings.RowCe, Rows);
        double loss = 0;
        for (int t = 0; t < Rows; t++)
            if (codes[t] != -2) loss += coefficients[t] * (double)kl[t] + (codes[t] >= 0 ? plan.CeCoefficient * ce[t] : 0);
        return loss;
    }

    private float[] DownloadBf16(DevicePointer<Bf16> values) => emu.Download(values, Rows * Vocab).Select(b => ToSingle(b.Bits)).ToArray();

    private void AssertCriterion(TorchKdReference.Result exact, TorchKdReference.Result torchBf16, double loss, float[] grad, string what)
    {
        double ours = KdTestData.RelativeError(grad, exact.Gradient), theirs = KdTestData.RelativeError(torchBf16.Gradient, exact.Gradient);
        output.WriteLine($"{what}: gradient ours {ours:E3} torch bf16 {theirs:E3}");
        Assert.True(ours <= 2 * theirs, $"{what} gradient: ours {ours:E3}, torch bf16 {theirs:E3}");
        double oursLoss = KdTestData.RelativeError(loss, exact.Loss), theirsLoss = KdTestData.RelativeError(torchBf16.Loss, exact.Loss);
        output.WriteLine($"{what}: loss ours {oursLoss:E3} torch bf16 {theirsLoss:E3}");
        Assert.True(oursLoss <= 2 * theirsLoss, $"{what} loss: ours {oursLoss:E3}, torch bf16 {theirsLoss:E3}");
    }

    // bf16-rounded logits (every side sees exactly these values) and labels with every 5th token ignored.
    private static (float[] Student, float[] Teacher, int[] Labels) Inputs(int seed) =>
        (FromBits(ToBits(KdTestData.Logits(Rows * Vocab, seed))), FromBits(ToBits(KdTestData.Logits(Rows * Vocab, seed + 1))),
            KdTestData.Labels(Rows, Vocab, seed + 2, 5));

    private static ushort[] ToBits(float[] values) => values.Select(FromSingle).ToArray();

    private static float[] FromBits(ushort[] bits) => bits.Select(ToSingle).ToArray();

    public void Dispose()
    {
        _ = fixture;
        foreach (var b in buffers) b.Dispose();
        emu.Dispose();
    }
}
