using E3.Pruning.Distillation;
using Xunit;

namespace E3.Tests.Distillation;

/// <summary>
/// The fused CPU loss and gradient against TorchSharp's composite ops with autograd, run in float64 as the
/// reference. Tolerance: fp32 relative 1e-5 (loss, and the gradient in the infinity norm). Our fp32 errors come
/// from exp/log of arguments up to ~|u| ≤ 30 (each a few ulp, ~2e-6 relative) and fp32 block sums of at most
/// 2048/8 = 256 terms per lane (≤ 256·6e-8 ≈ 1.5e-5 worst case, ~1e-6 typical since the terms are positive and
/// random-signed rounding cancels); 1e-5 leaves room for that without hiding a wrong formula, which shows up as
/// errors of order 1e-2 or more.
/// </summary>
public sealed class EntropyKdLossTests
{
    private const double Fp32Tolerance = 1e-5;

    public static TheoryData<int, int, KlDirection, EntropyWeighting, double, double> DenseCases() => new()
    {
        { 7, 31, KlDirection.Forward, EntropyWeighting.Linear, 1.0, 1.0 },
        { 7, 31, KlDirection.Reverse, EntropyWeighting.Linear, 1.0, 1.0 },
        { 7, 31, KlDirection.Forward, EntropyWeighting.Softmax, 2.0, 1.0 },
        { 7, 31, KlDirection.Reverse, EntropyWeighting.Softmax, 0.7, 1.0 },
        { 7, 31, KlDirection.Forward, EntropyWeighting.None, 2.0, 1.0 },
        { 7, 31, KlDirection.Reverse, EntropyWeighting.None, 1.0, 0.6 },
        { 7, 31, KlDirection.Forward, EntropyWeighting.Linear, 3.0, 0.25 },
        { 1, 1, KlDirection.Forward, EntropyWeighting.Linear, 1.0, 1.0 },
        { 1, 31, KlDirection.Reverse, EntropyWeighting.Linear, 2.0, 0.5 },
        { 1423, 31, KlDirection.Forward, EntropyWeighting.Linear, 2.0, 0.5 },
        { 1423, 31, KlDirection.Reverse, EntropyWeighting.Softmax, 1.0, 1.0 },
        { 3, 5000, KlDirection.Forward, EntropyWeighting.Linear, 1.5, 0.8 },
        { 1, 151_936, KlDirection.Forward, EntropyWeighting.Linear, 2.0, 0.5 },
        { 2, 151_936, KlDirection.Reverse, EntropyWeighting.Softmax, 1.0, 1.0 },
    };

    [Theory]
    [MemberData(nameof(DenseCases))]
    public void DenseMatchesTorchAutograd(int rows, int vocab, KlDirection direction, EntropyWeighting weighting, double tau, double lambda)
    {
        var options = new KdOptions { Direction = direction, Weighting = weighting, Temperature = tau, KdFraction = lambda };
        var student = KdTestData.Logits(rows * vocab, 1);
        var teacher = KdTestData.Logits(rows * vocab, 2);
        var labels = KdTestData.Labels(rows, vocab, 3, ignoreEvery: rows > 2 ? 3 : 0);
        var want = TorchKdReference.Dense(student, vocab, teacher, vocab, rows, labels, options);

        var grad = (float[])student.Clone();
        var got = EntropyKdLoss.Compute(grad, vocab, new DenseTeacher(teacher, rows, vocab), labels, options);

        Assert.True(KdTestData.RelativeError(got.Loss, want.Loss) <= Fp32Tolerance, $"loss {got.Loss} vs {want.Loss}");
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= Fp32Tolerance, $"gradient error {KdTestData.RelativeError(grad, want.Gradient)}");
    }

    public static TheoryData<int, int, int, KlDirection, EntropyWeighting, double, double> SparseCases() => new()
    {
        { 7, 31, 10, KlDirection.Forward, EntropyWeighting.Linear, 1.0, 1.0 },
        { 7, 31, 10, KlDirection.Reverse, EntropyWeighting.Linear, 1.0, 1.0 },
        { 7, 31, 10, KlDirection.Forward, EntropyWeighting.Softmax, 2.0, 0.5 },
        { 7, 31, 10, KlDirection.Reverse, EntropyWeighting.None, 0.5, 0.7 },
        { 1, 1, 1, KlDirection.Forward, EntropyWeighting.Linear, 1.0, 1.0 },
        { 1423, 31, 10, KlDirection.Forward, EntropyWeighting.Linear, 2.0, 0.5 },
        { 2, 151_936, 10, KlDirection.Forward, EntropyWeighting.Linear, 2.0, 1.0 },
        { 1, 151_936, 10, KlDirection.Reverse, EntropyWeighting.Linear, 1.0, 0.5 },
    };

    [Theory]
    [MemberData(nameof(SparseCases))]
    public void SparseMatchesTorchAutograd(int rows, int vocab, int k, KlDirection direction, EntropyWeighting weighting, double tau, double lambda)
    {
        var options = new KdOptions { Direction = direction, Weighting = weighting, Temperature = tau, KdFraction = lambda };
        var student = KdTestData.Logits(rows * vocab, 4);
        var (indices, logProbs) = KdTestData.TopK(KdTestData.Logits(rows * vocab, 5), rows, vocab, k);
        var labels = KdTestData.Labels(rows, vocab, 6, ignoreEvery: rows > 2 ? 4 : 0);
        var want = TorchKdReference.Sparse(student, vocab, indices, logProbs, k, rows, labels, options);

        var grad = (float[])student.Clone();
        var got = EntropyKdLoss.Compute(grad, vocab, new SparseTeacher(indices, logProbs, rows, k, vocab), labels, options);

        Assert.True(KdTestData.RelativeError(got.Loss, want.Loss) <= Fp32Tolerance, $"loss {got.Loss} vs {want.Loss}");
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= Fp32Tolerance, $"gradient error {KdTestData.RelativeError(grad, want.Gradient)}");
    }

    [Fact]
    public void WeightClampMatchesTorch()
    {
        const int rows = 64, vocab = 50;
        var options = new KdOptions { MinWeight = 0.8, MaxWeight = 1.1 };
        // Teacher temperatures vary by row so the entropies (and the unclamped weights) spread widely.
        var teacher = KdTestData.Logits(rows * vocab, 8);
        for (int t = 0; t < rows; t++)
            for (int c = 0; c < vocab; c++) teacher[t * vocab + c] *= 0.1f + t / 8f;
        var student = KdTestData.Logits(rows * vocab, 9);
        var want = TorchKdReference.Dense(student, vocab, teacher, vocab, rows, null, options);
        var grad = (float[])student.Clone();
        var got = EntropyKdLoss.Compute(grad, vocab, new DenseTeacher(teacher, rows, vocab), [], options);
        var plan = KdPlan.Create(new DenseTeacher(teacher, rows, vocab), [], vocab, options);

        Assert.Contains(plan.Weights, w => w == 0.8);
        Assert.Contains(plan.Weights, w => w == 1.1);
        Assert.True(KdTestData.RelativeError(got.Loss, want.Loss) <= Fp32Tolerance);
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= Fp32Tolerance);
    }

    [Fact]
    public void PaddedTeacherVocabularyDropsTheExtraColumns()
    {
        // Qwen's padded head: 128 extra teacher columns are dropped; the reference slices them off.
        const int rows = 2, vocab = 1000, padded = 1128;
        var options = new KdOptions { Temperature = 2, KdFraction = 0.5 };
        var student = KdTestData.Logits(rows * vocab, 10);
        var teacher = KdTestData.Logits(rows * padded, 11);
        var labels = KdTestData.Labels(rows, vocab, 12, 0);
        var want = TorchKdReference.Dense(student, vocab, teacher, padded, rows, labels, options);
        var grad = (float[])student.Clone();
        var got = EntropyKdLoss.Compute(grad, vocab, new DenseTeacher(teacher, rows, padded), labels, options);
        Assert.True(KdTestData.RelativeError(got.Loss, want.Loss) <= Fp32Tolerance);
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= Fp32Tolerance);

        // And the student being the wider one: its padding columns get exactly zero gradient.
        var wide = new float[rows * padded];
        for (int t = 0; t < rows; t++) student.AsSpan(t * vocab, vocab).CopyTo(wide.AsSpan(t * padded));
        var teacherNarrow = new float[rows * vocab];
        for (int t = 0; t < rows; t++) teacher.AsSpan(t * padded, vocab).CopyTo(teacherNarrow.AsSpan(t * vocab));
        var wantNarrow = TorchKdReference.Dense(wide, padded, teacherNarrow, vocab, rows, labels, options);
        var got2 = EntropyKdLoss.Compute(wide, padded, new DenseTeacher(teacherNarrow, rows, vocab), labels, options);
        Assert.True(KdTestData.RelativeError(got2.Loss, wantNarrow.Loss) <= Fp32Tolerance);
        Assert.True(KdTestData.RelativeError(wide, wantNarrow.Gradient) <= Fp32Tolerance);
        for (int t = 0; t < rows; t++)
            Assert.All(wide.AsSpan(t * padded + vocab, padded - vocab).ToArray(), g => Assert.Equal(0f, g));
    }

    [Fact]
    public void OtherVocabularyMismatchIsAnError()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            EntropyKdLoss.Compute(new float[2 * 1000], 1000, new DenseTeacher(new float[2 * 2000], 2, 2000), [], new KdOptions()));
        Assert.Contains("teacher has 2000 columns, student 1000", error.Message);
    }

    [Fact]
    public void AllIgnoredGivesZeroLossAndZeroGradient()
    {
        const int rows = 5, vocab = 31;
        var student = KdTestData.Logits(rows * vocab, 13);
        var labels = Enumerable.Repeat(-100, rows).ToArray();
        var got = EntropyKdLoss.Compute(student, vocab, new DenseTeacher(KdTestData.Logits(rows * vocab, 14), rows, vocab), labels,
            new KdOptions { KdFraction = 0.5 });
        Assert.Equal(0.0, got.Loss);
        Assert.Equal(0, got.ValidTokens);
        Assert.All(student, g => Assert.Equal(0f, g));
    }

    [Theory]
    [InlineData(KlDirection.Forward)]
    [InlineData(KlDirection.Reverse)]
    public void ExtremeLogitsStayFiniteAndMatch(KlDirection direction)
    {
        // ±1e4 logits: a naive exp overflows; the float64 reference is exact enough to compare against.
        const int rows = 4, vocab = 300;
        var student = KdTestData.Logits(rows * vocab, 15).Select(x => x > 0 ? 1e4f : -1e4f).ToArray();
        var teacher = KdTestData.Logits(rows * vocab, 16).Select(x => x * 3000f).ToArray();
        var options = new KdOptions { Direction = direction, Temperature = 2, Weighting = EntropyWeighting.None };
        var want = TorchKdReference.Dense(student, vocab, teacher, vocab, rows, null, options);
        var grad = (float[])student.Clone();
        var got = EntropyKdLoss.Compute(grad, vocab, new DenseTeacher(teacher, rows, vocab), [], options);
        Assert.True(double.IsFinite(got.Loss));
        Assert.All(grad, g => Assert.True(float.IsFinite(g)));
        // Losses here are ~1e3-1e4 (a sum of differences of 1e4-sized logits): fp32 keeps ~7 digits of those.
        Assert.True(KdTestData.RelativeError(got.Loss, want.Loss) <= 1e-5, $"{got.Loss} vs {want.Loss}");
        Assert.True(KdTestData.RelativeError(grad, want.Gradient) <= 1e-5);
    }

    [Fact]
    public void NonFiniteInputIsAnErrorUnlessMasked()
    {
        const int rows = 3, vocab = 31;
        var teacher = KdTestData.Logits(rows * vocab, 17);
        var student = KdTestData.Logits(rows * vocab, 18);
        student[vocab + 5] = float.NaN;
        var error = Assert.Throws<ArgumentException>(() =>
            EntropyKdLoss.Compute((float[])student.Clone(), vocab, new DenseTeacher(teacher, rows, vocab), [], new KdOptions()));
        Assert.Contains("student logits: row 1", error.Message);

        var badTeacher = (float[])teacher.Clone();
        badTeacher[2 * vocab] = float.PositiveInfinity;
        var teacherError = Assert.Throws<ArgumentException>(() =>
            EntropyKdLoss.Compute(KdTestData.Logits(rows * vocab, 18), vocab, new DenseTeacher(badTeacher, rows, vocab), [], new KdOptions()));
        Assert.Contains("teacher logits: row 2", teacherError.Message);

        // Masked: row 1 drops out; the result equals the loss of the other rows with row 1 ignored by label.
        var masked = (float[])student.Clone();
        var got = EntropyKdLoss.Compute(masked, vocab, new DenseTeacher(teacher, rows, vocab), [], new KdOptions { MaskNonFinite = true });
        var clean = (float[])student.Clone();
        clean[vocab + 5] = 0;
        var ignored = EntropyKdLoss.Compute(clean, vocab, new DenseTeacher(teacher, rows, vocab), [0, -100, 0], new KdOptions());
        Assert.Equal(2, got.ValidTokens);
        Assert.Equal(ignored.Loss, got.Loss, 12);
        Assert.Equal(clean, masked);
    }

    [Fact]
    public void Bf16IsNoWorseThanTwiceTorchsOwnBf16Error()
    {
        // flash-attention's criterion: our error against the float64 reference may be at most twice that of the
        // same computation done by the framework in bf16 (TorchSharp's composite on bf16 tensors), on the same
        // bf16-rounded inputs.
        const int rows = 16, vocab = 4096;
        var options = new KdOptions { Temperature = 2, KdFraction = 0.7 };
        var student = Round(KdTestData.Logits(rows * vocab, 19));
        var teacher = Round(KdTestData.Logits(rows * vocab, 20));
        var labels = KdTestData.Labels(rows, vocab, 21, 5);
        var want = TorchKdReference.Dense(student, vocab, teacher, vocab, rows, labels, options);
        var torchBf16 = TorchKdReference.Dense(student, vocab, teacher, vocab, rows, labels, options, TorchSharp.torch.ScalarType.BFloat16);

        var bits = student.Select(E3.Backends.Numerics.BFloat16.FromSingle).ToArray();
        var teacherBits = teacher.Select(E3.Backends.Numerics.BFloat16.FromSingle).ToArray();
        var got = EntropyKdLoss.Compute(bits.AsSpan(), vocab, new DenseTeacher(teacherBits, rows, vocab), labels, options);
        var grad = bits.Select(E3.Backends.Numerics.BFloat16.ToSingle).ToArray();

        double ours = KdTestData.RelativeError(grad, want.Gradient), theirs = KdTestData.RelativeError(torchBf16.Gradient, want.Gradient);
        Assert.True(ours <= 2 * theirs, $"gradient: ours {ours}, torch bf16 {theirs}");
        double oursLoss = KdTestData.RelativeError(got.Loss, want.Loss), theirsLoss = KdTestData.RelativeError(torchBf16.Loss, want.Loss);
        Assert.True(oursLoss <= 2 * theirsLoss, $"loss: ours {oursLoss}, torch bf16 {theirsLoss}");
    }

    private static float[] Round(float[] x) => x.Select(v => E3.Backends.Numerics.BFloat16.ToSingle(E3.Backends.Numerics.BFloat16.FromSingle(v))).ToArray();
}
