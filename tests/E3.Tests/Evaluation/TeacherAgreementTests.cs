using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;
using E3.Pruning.Export;
using E3.Tests.Export;
using E3.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.Evaluation;

public class TeacherAgreementTests
{
    // Both sides compute in double from the same fp32 logits; they differ only in summation order and in exp/log
    // rounding, ~1e-16 relative per term on log-probabilities of magnitude ~10 over ≤ 512 terms: ~1e-12 absolute.
    const double KlTolerance = 1e-12;

    static double TorchKl(float[] teacher, float[] student, int rows, int vocab)
    {
        using var scope = NewDisposeScope();
        var logP = nn.functional.log_softmax(tensor(teacher, [rows, vocab]).to(ScalarType.Float64), 1);
        var logQ = nn.functional.log_softmax(tensor(student, [rows, vocab]).to(ScalarType.Float64), 1);
        // kl_div(input = log q, target = log p, log_target) is Σ p (log p − log q): KL(teacher ‖ student).
        return nn.functional.kl_div(logQ, logP, reduction: nn.Reduction.Sum, log_target: true).item<double>();
    }

    [Theory]
    [InlineData(1.0, null, 512)]    // unrelated distributions
    [InlineData(30.0, null, 512)]   // peaked: large logits, log-probabilities far below −100
    [InlineData(1.0, 1e-4, 512)]    // a student a hair away from its teacher: KL ~1e-9
    [InlineData(3.0, 0.5, 7)]
    public void KlDivergenceMatchesTorch(double scale, double? studentNoise, int vocab)
    {
        var rng = new Random(11);
        for (int row = 0; row < 8; row++)
        {
            var teacher = Enumerable.Range(0, vocab).Select(_ => (float)(scale * rng.NextDouble() * 2 - scale)).ToArray();
            var student = teacher.Select(t => (float)(studentNoise is double noise ? t + noise * (rng.NextDouble() - 0.5) : scale * rng.NextDouble() * 2 - scale)).ToArray();
            double expected = TorchKl(teacher, student, 1, vocab);
            double actual = TeacherAgreement.KlDivergence(teacher, student);
            Assert.True(Math.Abs(actual - expected) <= KlTolerance, $"row {row}: {actual} vs torch {expected}");
        }
    }

    [Fact]
    public void ArgMaxTakesTheFirstOfEqualMaximaAndTheFirstNaN()
    {
        // Agreement compares argmaxes ranked as the device ranks them (GreedyGenerator.ArgMax): ties to the first, and a
        // NaN above every number, so a student that turned a logit into NaN disagrees with a teacher that did not.
        Assert.Equal(1, E3.Model.Decoder.GreedyGenerator.ArgMax([0f, 3f, 1f, 3f]));
        Assert.Equal(0, E3.Model.Decoder.GreedyGenerator.ArgMax([float.NegativeInfinity, float.NegativeInfinity]));
        Assert.Equal(2, E3.Model.Decoder.GreedyGenerator.ArgMax([0f, 3f, float.NaN, 3f]));
    }

    [Theory]
    [InlineData(32, long.MaxValue)] // windows of 32, 32 and 6 tokens: 67 positions
    [InlineData(32, 40)]            // stops after the window that reaches 40 positions: 62
    public void AgreementOnRandomModelsMatchesTorch(int window, long maxTokens)
    {
        using var dir = new TempDir();
        ExportTestModels.Write(dir["teacher"], ExportTestModels.Spec(Architecture.Qwen3, true, seed: 7));
        // A different checkpoint with fewer layers but the same vocabulary, as an exported or healed student is.
        ExportTestModels.Write(dir["other"], ExportTestModels.Spec(Architecture.Qwen3, true, seed: 8) with { Layers = 4 });
        using var backend = new CpuBackend(1);
        using var teacher = DecoderModel.Load(dir["teacher"], backend);
        using var other = DecoderModel.Load(dir["other"], backend);
        int[] tokens = Enumerable.Range(0, 70).Select(i => (i * 29 + 3) % 96).ToArray();
        var students = new[] { new StudentUnderTest(teacher, LayerMask.Dropping(6, [1, 4])), new StudentUnderTest(other, null) };

        var results = TeacherAgreement.EvaluateMany(teacher, null, students, tokens, window, maxTokens);

        for (int s = 0; s < students.Length; s++)
        {
            double kl = 0;
            long agree = 0, positions = 0;
            foreach (var (start, length) in Perplexity.Windows(tokens.Length, window, maxTokens))
            {
                var w = tokens.AsSpan(start, length);
                int rows = length - 1, vocab = 96;
                float[] t = teacher.Forward(w)[..(rows * vocab)], q = students[s].Model.Forward(w, students[s].Mask)[..(rows * vocab)];
                kl += TorchKl(t, q, rows, vocab);
                using var scope = NewDisposeScope();
                agree += tensor(t, [rows, vocab]).argmax(1).eq(tensor(q, [rows, vocab]).argmax(1)).sum().item<long>();
                positions += rows;
            }
            Assert.Equal(maxTokens == 40 ? 62 : 67, positions);
            Assert.Equal(positions, results[s].Perplexity.TokensScored);
            Assert.True(Math.Abs(results[s].MeanKl - kl / positions) <= KlTolerance, $"student {s}: {results[s].MeanKl} vs torch {kl / positions}");
            Assert.True(results[s].MeanKl > 1e-4, "the students differ from the teacher, so the test can see a wrong KL");
            Assert.Equal((double)agree / positions, results[s].Top1Agreement);
            // Perplexity on the same windows is exactly what e3 eval without a teacher reports.
            Assert.Equal(Perplexity.Evaluate(students[s].Model, tokens, students[s].Mask, window, maxTokens), results[s].Perplexity);
        }
    }

    [Fact]
    public void TheTeacherAgainstItselfHasZeroKlAndFullAgreement()
    {
        using var dir = new TempDir();
        ExportTestModels.Write(dir["teacher"], ExportTestModels.Spec(Architecture.Llama, false));
        using var backend = new CpuBackend(1);
        using var teacher = DecoderModel.Load(dir["teacher"], backend);
        int[] tokens = Enumerable.Range(0, 40).Select(i => (i * 13 + 1) % 96).ToArray();
        var r = TeacherAgreement.Evaluate(teacher, null, new StudentUnderTest(teacher, null), tokens, 16);
        Assert.Equal(0.0, r.MeanKl);
        Assert.Equal(1.0, r.Top1Agreement);
    }

    [Fact]
    public void AnExportedModelAgreesWithItsTeacherExactlyAsTheMaskedTeacherDoes()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["teacher"], ExportTestModels.Spec(Architecture.Qwen3, false));
        string mask = ExportTestModels.WriteMask(dir["mask.json"], config);
        new CheckpointExporter().Export(dir["teacher"], mask, dir["pruned"]);
        using var backend = new CpuBackend(1);
        using var teacher = DecoderModel.Load(dir["teacher"], backend);
        using var pruned = DecoderModel.Load(dir["pruned"], backend);
        int[] tokens = Enumerable.Range(0, 50).Select(i => (i * 31 + 7) % 96).ToArray();
        var results = TeacherAgreement.EvaluateMany(teacher, null,
            [new StudentUnderTest(pruned, null), new StudentUnderTest(teacher, E3.Pruning.Masks.MaskFile.Load(mask).ToLayerMask())], tokens, 20);
        Assert.Equal(results[1], results[0]);
    }

    [Fact]
    public void AVocabMismatchNamesBothModels()
    {
        using var dir = new TempDir();
        ExportTestModels.Write(dir["teacher"], ExportTestModels.Spec(Architecture.Qwen3, true));
        ExportTestModels.Write(dir["student"], ExportTestModels.Spec(Architecture.Qwen3, true) with { Vocab = 128 });
        using var backend = new CpuBackend(1);
        using var teacher = DecoderModel.Load(dir["teacher"], backend);
        using var student = DecoderModel.Load(dir["student"], backend);
        var e = Assert.Throws<ModelFormatException>(() => TeacherAgreement.Evaluate(teacher, null, new StudentUnderTest(student, null), [1, 2, 3]));
        Assert.Equal("vocab_size", e.Field);
        Assert.Contains(dir["student"], e.Message);
        Assert.Contains(dir["teacher"], e.Message);
        Assert.Contains("128", e.Message);
        Assert.Contains("96", e.Message);
    }
}
