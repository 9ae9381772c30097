using E3.Interop.Emulator;
using E3.Pruning.Distillation;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.Distillation;

/// <summary>
/// kernels/entropy_kd.cu run by the CPU emulator (the same source NVRTC compiles), against the float64 TorchSharp
/// reference and the CPU implementation. The kernel sums in fp32 per thread (up to V/256 ≈ 600 terms each) and
/// merges 256 partials, so it gets a bound of 3e-5 relative (≈ 600·ε worst case per thread sum, with room for
/// __expf); the CPU path is held to 1e-5 elsewhere, so cpu vs emu differ by at most their sum, 4e-5.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class EntropyKdEmulatorTests(EmuFixture fixture)
{
    private const double KernelTolerance = 3e-5;
    private readonly EmuDevice device = fixture.Device;

    public static TheoryData<int, int, KlDirection, double, double, bool> Cases() => new()
    {
        { 7, 31, KlDirection.Forward, 1.0, 1.0, false },
        { 7, 31, KlDirection.Reverse, 2.0, 0.5, false },
        { 5, 1000, KlDirection.Forward, 2.0, 0.6, true },
        { 1, 151_936, KlDirection.Reverse, 1.0, 1.0, false },
        { 1, 151_936, KlDirection.Forward, 1.5, 0.5, true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void DenseKernelMatchesReferenceAndCpu(int rows, int vocab, KlDirection direction, double tau, double lambda, bool bf16Teacher)
    {
        var options = new KdOptions { Direction = direction, Temperature = tau, KdFraction = lambda, Weighting = EntropyWeighting.Softmax };
        var student = KdTestData.Logits(rows * vocab, 40);
        var teacher = KdTestData.Logits(rows * vocab, 41);
        if (bf16Teacher) teacher = teacher.Select(x => E3.Backends.Numerics.BFloat16.ToSingle(E3.Backends.Numerics.BFloat16.FromSingle(x))).ToArray();
        var labels = KdTestData.Labels(rows, vocab, 42, rows > 3 ? 3 : 0);
        var want = TorchKdReference.Dense(student, vocab, teacher, vocab, rows, labels, options);
        var cpuGrad = (float[])student.Clone();
        var cpu = EntropyKdLoss.Compute(cpuGrad, vocab, new DenseTeacher(teacher, rows, vocab), labels, options);

        float k = (float)(1 / tau);
        using var zs = device.Upload<float>(student);
        using var zt = bf16Teacher
            ? device.Upload<ushort>(teacher.Select(E3.Backends.Numerics.BFloat16.FromSingle).ToArray())
            : device.Upload<float>(teacher);
        using var tMax = device.Allocate(rows * 4);
        using var tLog = device.Allocate(rows * 4);
        using var entropy = device.Allocate(rows * 4);
        device.Launch(device.GetFunction("entropy_kd", bf16Teacher ? "e3_kd_teacher_bf16" : "e3_kd_teacher_f32"), (uint)rows, 256u, 0, null,
            zt, vocab, rows, vocab, k, tMax, tLog, entropy);

        // The host turns the kernel's entropies into weights, as the GPU driver does.
        var plan = KdPlan.Create(new DenseTeacher(teacher, rows, vocab), labels, vocab, options);
        var gotEntropy = entropy.Download<float>(rows);
        for (int t = 0; t < rows; t++)
            if (plan.Valid[t]) Assert.True(Math.Abs(gotEntropy[t] - plan.Entropy[t]) <= KernelTolerance * Math.Max(1, plan.Entropy[t]));
        var (coefficients, kernelLabels) = Coefficients(plan, gotEntropy.Select(h => (double)h).ToArray(), options);
        using var kd = device.Upload<float>(coefficients);
        using var lab = device.Upload<int>(kernelLabels);
        using var rowKl = device.Allocate(rows * 4);
        using var rowCe = device.Allocate(rows * 4);
        // The bf16-teacher variant pairs with a bf16 student; an fp32 student always uses the f32 kernel.
        if (bf16Teacher)
        {
            using var zsBf16 = device.Upload<ushort>(student.Select(E3.Backends.Numerics.BFloat16.FromSingle).ToArray());
            device.Launch(device.GetFunction("entropy_kd", "e3_kd_dense_bf16"), (uint)rows, 256u, 0, null, zsBf16, vocab, zt, vocab, rows, vocab,
                tMax, tLog, entropy, kd, lab, (float)plan.CeCoefficient, k, direction == KlDirection.Reverse ? 1 : 0, rowKl, rowCe);
            var gradBits = zsBf16.Download<ushort>(rows * vocab);
            Assert.All(gradBits, b => Assert.True(float.IsFinite(E3.Backends.Numerics.BFloat16.ToSingle(b))));
            return; // values checked by the bf16 criterion test; here: it runs and stays finite
        }
        device.Launch(device.GetFunction("entropy_kd", "e3_kd_dense_f32"), (uint)rows, 256u, 0, null, zs, vocab, zt, vocab, rows, vocab,
            tMax, tLog, entropy, kd, lab, (float)plan.CeCoefficient, k, direction == KlDirection.Reverse ? 1 : 0, rowKl, rowCe);
        var grad = zs.Download<float>(rows * vocab);
        double loss = Loss(coefficients, plan.CeCoefficient, kernelLabels, rowKl.Download<float>(rows), rowCe.Download<float>(rows));

        AssertAgreement(loss, grad, want, cpu.Loss, cpuGrad);
    }

    [Theory]
    [InlineData(7, 31, KlDirection.Forward, 1.0, 1.0)]
    [InlineData(7, 31, KlDirection.Reverse, 2.0, 0.5)]
    [InlineData(2, 151_936, KlDirection.Forward, 2.0, 0.7)]
    public void SparseKernelMatchesReferenceAndCpu(int rows, int vocab, KlDirection direction, double tau, double lambda)
    {
        const int topK = 10;
        var options = new KdOptions { Direction = direction, Temperature = tau, KdFraction = lambda };
        var student = KdTestData.Logits(rows * vocab, 43);
        var (indices, logProbs) = KdTestData.TopK(KdTestData.Logits(rows * vocab, 44), rows, vocab, topK);
        var labels = KdTestData.Labels(rows, vocab, 45, rows > 3 ? 3 : 0);
        var teacher = new SparseTeacher(indices, logProbs, rows, topK, vocab);
        var want = TorchKdReference.Sparse(student, vocab, indices, logProbs, topK, rows, labels, options);
        var cpuGrad = (float[])student.Clone();
        var cpu = EntropyKdLoss.Compute(cpuGrad, vocab, teacher, labels, options);

        var plan = KdPlan.Create(teacher, labels, vocab, options);
        var (coefficients, kernelLabels) = Coefficients(plan, plan.Entropy, options);
        using var zs = device.Upload<float>(student);
        using var idx = device.Upload<int>(indices);
        using var buckets = device.Upload<float>(plan.BucketLogProbs!.Select(x => (float)x).ToArray());
        using var kd = device.Upload<float>(coefficients);
        using var lab = device.Upload<int>(kernelLabels);
        using var rowKl = device.Allocate(rows * 4);
        using var rowCe = device.Allocate(rows * 4);
        device.Launch(device.GetFunction("entropy_kd", "e3_kd_sparse_f32"), (uint)rows, 256u, 0, null, zs, vocab, rows, vocab, idx, buckets, topK,
            kd, lab, (float)plan.CeCoefficient, (float)(1 / tau), direction == KlDirection.Reverse ? 1 : 0, rowKl, rowCe);
        var grad = zs.Download<float>(rows * vocab);
        double loss = Loss(coefficients, plan.CeCoefficient, kernelLabels, rowKl.Download<float>(rows), rowCe.Download<float>(rows));

        AssertAgreement(loss, grad, want, cpu.Loss, cpuGrad);
    }

    private static void AssertAgreement(double loss, float[] grad, TorchKdReference.Result want, double cpuLoss, float[] cpuGrad)
    {
        Assert.True(KdTestData.RelativeError(loss, want.Loss) <= KernelTolerance, $"emu loss {loss} vs {want.Loss}");
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= KernelTolerance, $"emu gradient {KdTestData.RelativeError(grad, want.Gradient)}");
        Assert.True(KdTestData.RelativeError(loss, cpuLoss) <= KernelTolerance + 1e-5);
        Assert.True(KdTestData.RelativeError(grad, cpuGrad) <= KernelTolerance + 1e-5);
    }

    // kd_coef = λτ²w/N per row and the kernel's label codes (-2 ignored, -1 no CE).
    private static (float[], int[]) Coefficients(KdPlan plan, double[] entropy, KdOptions options)
    {
        var weights = TokenWeights.Compute(entropy, plan.Valid, options);
        var coefficients = new float[plan.Rows];
        var labels = new int[plan.Rows];
        for (int t = 0; t < plan.Rows; t++)
        {
            coefficients[t] = plan.Valid[t] ? (float)(options.KdFraction * options.Temperature * options.Temperature * weights[t] / plan.ValidCount) : 0f;
            labels[t] = plan.Valid[t] ? plan.Labels[t] : -2;
        }
        return (coefficients, labels);
    }

    private static double Loss(float[] kdCoefficients, double ceCoefficient, int[] labels, float[] kl, float[] ce)
    {
        double loss = 0;
        for (int t = 0; t < labels.Length; t++)
            if (labels[t] != -2) loss += kdCoefficients[t] * (double)kl[t] + (labels[t] >= 0 ? ceCoefficient * ce[t] : 0);
        return loss;
    }
}
