using E3.Backends;
using E3.Pruning.Distillation;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Gpu = E3.Backends.Gpu.GpuBackend;

namespace E3.Tests.Distillation;

/// <summary>
/// The distillation loss fused with the LM head on GpuBackend over the emulator (cuBLAS-semantics GEMMs and the
/// entropy_kd.cu student pass, chunk by chunk), against an independent float64 reference: the logits h·Wᵀ formed by
/// TorchSharp, the loss and its logit gradient from <see cref="TorchKdReference"/>, chained back through the head.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class BackendKdLmHeadTests(EmuFixture fixture) : IDisposable
{
    // The student pass's own bound on the emulator is 3e-5 (fp32 per-thread sums of up to V/256 terms; see
    // EntropyKdGpuDeviceTests); the fp32 GEMMs before and after it add about 2e-5 (sqrt(H)·ε on the logits and
    // sqrt(V)·ε on the gradients' dot products; see EntropyKdLmHeadTests). A wrong row, chunk offset, coefficient or
    // transpose is off by O(1).
    const double Bound = 5e-5;
    const int HiddenSize = 48;

    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    Gpu Backend() => new(_emu.Device, DType.F32, ownsDevice: false);

    sealed record Problem(int Rows, int StudentVocab, float[] Hidden, float[] Head)
    {
        public static Problem Random(int rows, int studentVocab, int seed) =>
            new(rows, studentVocab, KdTestData.Logits(rows * HiddenSize, seed, 1.0), KdTestData.Logits(studentVocab * HiddenSize, seed + 1, 0.3));

        public float[] Logits()
        {
            using var scope = NewDisposeScope();
            var z = tensor(Hidden, [Rows, HiddenSize]).to(ScalarType.Float64).matmul(tensor(Head, [StudentVocab, HiddenSize]).to(ScalarType.Float64).t());
            return z.to(ScalarType.Float32).data<float>().ToArray();
        }

        /// <summary>dHidden = G·W and dHead = Gᵀ·H in float64 from the logit gradient G.</summary>
        public (float[] DHidden, float[] DHead) Chain(float[] logitGradient)
        {
            using var scope = NewDisposeScope();
            var g = tensor(logitGradient, [Rows, StudentVocab]).to(ScalarType.Float64);
            var h = tensor(Hidden, [Rows, HiddenSize]).to(ScalarType.Float64);
            var w = tensor(Head, [StudentVocab, HiddenSize]).to(ScalarType.Float64);
            return (g.matmul(w).to(ScalarType.Float32).data<float>().ToArray(), g.t().matmul(h).to(ScalarType.Float32).data<float>().ToArray());
        }
    }

    sealed record Outcome(LmHeadKdResult Result, float[] DHidden, float[] DHead);

    /// <summary>Runs the backend head; the head gradient starts at <paramref name="dHeadStart"/> (it is accumulated into).</summary>
    Outcome Run(Problem p, KdTeacher teacher, int[] labels, KdOptions options, long budget, float dHeadStart = 0f, bool trainHead = true)
    {
        using var backend = Backend();
        using var hidden = backend.Allocate(DType.F32, p.Rows, HiddenSize);
        using var head = backend.Allocate(DType.F32, p.StudentVocab, HiddenSize);
        using var dHidden = backend.Allocate(DType.F32, p.Rows, HiddenSize);
        using var dHead = backend.Allocate(DType.F32, p.StudentVocab, HiddenSize);
        backend.Upload(p.Hidden, hidden);
        backend.Upload(p.Head, head);
        var start = new float[p.Head.Length];
        Array.Fill(start, dHeadStart);
        backend.Upload(start, dHead);
        var result = BackendKdLmHead.Compute(backend, hidden, head, teacher, labels, options, dHidden, trainHead ? dHead : null, budget);
        var gotHidden = new float[p.Hidden.Length];
        var gotHead = new float[p.Head.Length];
        backend.Download(dHidden, gotHidden);
        backend.Download(dHead, gotHead);
        return new Outcome(result, gotHidden, gotHead);
    }

    static void AssertClose(Outcome got, double wantLoss, float[] wantHidden, float[] wantHead)
    {
        Assert.True(KdTestData.RelativeError(got.Result.Loss.Loss, wantLoss) <= Bound, $"loss {got.Result.Loss.Loss} vs {wantLoss}");
        Assert.True(KdTestData.RelativeError(got.DHidden, wantHidden) <= Bound, $"dHidden {KdTestData.RelativeError(got.DHidden, wantHidden):E3}");
        Assert.True(KdTestData.RelativeError(got.DHead, wantHead) <= Bound, $"dHead {KdTestData.RelativeError(got.DHead, wantHead):E3}");
    }

    [Theory]
    [InlineData(37, 1001, 1001, 4L * 1001 * 5, KlDirection.Forward)] // chunks of 5 rows, the last one partial
    [InlineData(37, 1001, 1001, 1L, KlDirection.Reverse)]            // a budget below one row: one row at a time
    [InlineData(20, 1005, 1001, 1L << 40, KlDirection.Forward)]      // one chunk; 4 student padding columns get no gradient
    public void DenseTeacherMatchesTheFloat64Reference(int rows, int studentVocab, int teacherVocab, long budget, KlDirection direction)
    {
        var p = Problem.Random(rows, studentVocab, 60);
        var teacher = KdTestData.Logits(rows * teacherVocab, 62);
        var labels = KdTestData.Labels(rows, teacherVocab, 63, 6);
        var options = new KdOptions { Temperature = 2, KdFraction = 0.75, Direction = direction };
        var want = TorchKdReference.Dense(p.Logits(), studentVocab, teacher, teacherVocab, rows, labels, options);
        var (wantHidden, wantHead) = p.Chain(want.Gradient);

        var got = Run(p, new DenseTeacher(teacher, rows, teacherVocab), labels, options, budget);
        AssertClose(got, want.Loss, wantHidden, wantHead);
        long rowBytes = studentVocab * sizeof(float);
        Assert.Equal(Math.Clamp(budget / rowBytes, 1, rows), got.Result.ChunkRows);
        Assert.Equal(got.Result.ChunkRows * rowBytes, got.Result.ChunkBytes);
        Assert.Equal(labels.Count(l => l != options.IgnoreIndex), got.Result.Loss.ValidTokens);
    }

    [Theory]
    [InlineData(KlDirection.Forward, 8)]
    [InlineData(KlDirection.Reverse, 3)]
    public void SparseTeacherMatchesTheFloat64Reference(KlDirection direction, int k)
    {
        const int rows = 23, vocab = 777;
        var p = Problem.Random(rows, vocab, 70);
        var (indices, logProbs) = KdTestData.TopK(KdTestData.Logits(rows * vocab, 72), rows, vocab, k);
        var labels = KdTestData.Labels(rows, vocab, 73, 5);
        var options = new KdOptions { Temperature = 1.5, KdFraction = 0.5, Direction = direction };
        var want = TorchKdReference.Sparse(p.Logits(), vocab, indices, logProbs, k, rows, labels, options);
        var (wantHidden, wantHead) = p.Chain(want.Gradient);

        var got = Run(p, new SparseTeacher(indices, logProbs, rows, k, vocab), labels, options, budget: 4L * vocab * 7);
        AssertClose(got, want.Loss, wantHidden, wantHead);
    }

    [Fact]
    public void TheHeadGradientIsAddedAndAFrozenHeadLeavesItAlone()
    {
        const int rows = 9, vocab = 301;
        var p = Problem.Random(rows, vocab, 80);
        var teacher = new DenseTeacher(KdTestData.Logits(rows * vocab, 82), rows, vocab);
        var labels = KdTestData.Labels(rows, vocab, 83, 4);
        var options = new KdOptions();
        var fresh = Run(p, teacher, labels, options, budget: 4L * vocab * 2);
        var added = Run(p, teacher, labels, options, budget: 4L * vocab * 2, dHeadStart: 1f);
        var frozen = Run(p, teacher, labels, options, budget: 4L * vocab * 2, dHeadStart: 1f, trainHead: false);
        Assert.Equal(fresh.DHidden, added.DHidden);
        Assert.Equal(fresh.DHidden, frozen.DHidden);
        for (int i = 0; i < fresh.DHead.Length; i++) Assert.Equal(fresh.DHead[i] + 1f, added.DHead[i], 1e-6f);
        Assert.All(frozen.DHead, g => Assert.Equal(1f, g));
        Assert.Contains(fresh.DHead, g => Math.Abs(g) > 1e-4f);
    }

    [Fact]
    public void ANonFiniteTeacherRowIsAnErrorOrMaskedAsTheHostPassDoes()
    {
        const int rows = 8, vocab = 301;
        var p = Problem.Random(rows, vocab, 90);
        var logits = KdTestData.Logits(rows * vocab, 92);
        logits[3 * vocab + 17] = float.NaN;
        var teacher = new DenseTeacher(logits, rows, vocab);
        var labels = KdTestData.Labels(rows, vocab, 93, 100);
        var e = Assert.Throws<ArgumentException>(() => Run(p, teacher, labels, new KdOptions(), 1L << 30));
        Assert.Contains("row 3", e.Message);

        // Masked, row 3 is an ignored token: the same loss and gradients as with its label set to ignore_index.
        var masked = Run(p, teacher, labels, new KdOptions { MaskNonFinite = true }, 1L << 30);
        var ignored = (int[])labels.Clone();
        ignored[3] = new KdOptions().IgnoreIndex;
        var clean = (float[])logits.Clone();
        clean[3 * vocab + 17] = 0f;
        var want = Run(p, new DenseTeacher(clean, rows, vocab), ignored, new KdOptions(), 1L << 30);
        Assert.Equal(rows - 1, masked.Result.Loss.ValidTokens);
        Assert.Equal(want.Result.Loss.Loss, masked.Result.Loss.Loss);
        Assert.Equal(want.DHidden, masked.DHidden);
        Assert.All(masked.DHidden.AsSpan(3 * HiddenSize, HiddenSize).ToArray(), g => Assert.Equal(0f, g));
    }

    [Fact]
    public void ANonFiniteStudentRowNamesTheRow()
    {
        const int rows = 6, vocab = 129;
        var p = Problem.Random(rows, vocab, 100);
        p.Hidden[4 * HiddenSize + 5] = float.PositiveInfinity;
        var teacher = new DenseTeacher(KdTestData.Logits(rows * vocab, 102), rows, vocab);
        var e = Assert.Throws<ArgumentException>(() => Run(p, teacher, KdTestData.Labels(rows, vocab, 103, 100), new KdOptions(), 1L << 30));
        Assert.Contains("row 4", e.Message);
    }

    [Fact]
    public void AnOutOfRangeSparseIndexIsRefusedBeforeAnyKernelReadsIt()
    {
        using var backend = Backend();
        using var hidden = backend.Allocate(DType.F32, 2, HiddenSize);
        using var head = backend.Allocate(DType.F32, 50, HiddenSize);
        using var dHidden = backend.Allocate(DType.F32, 2, HiddenSize);
        var teacher = new SparseKdHeadTeacher([1, 2, 3, 50], new float[6], 2, 50);
        var rows = new KdHeadRows([1f, 1f], [-1, -1], 0f, 1f, false);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => backend.KdLmHead(hidden, head, teacher, rows, dHidden, null, 1 << 20, new float[2], new float[2]));
        Assert.Contains("row 1 entry 1 has index 50", e.Message);
    }

    public void Dispose() => _emu.Dispose();
}
