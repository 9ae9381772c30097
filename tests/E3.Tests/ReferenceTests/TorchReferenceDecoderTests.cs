using E3.Tests.Reference;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.ReferenceTests;

public class TorchReferenceDecoderTests
{
    // Weights drawn with std 0.2 (not the 0.02 default) so attention is far from uniform and every layer moves the
    // logits by O(0.1): an error anywhere inside a layer then shows up far above the 1e-9 tolerance.
    private const double StrongStd = 0.2;

    // Both sides compute in float64 from the same float32 RoPE table; what remains is double rounding in different
    // summation orders (~1e-16 relative per op over a few hundred ops on O(1) values), so 1e-9 leaves ample room
    // while any formula difference (>1e-4 on these models) fails.
    private const double OracleTolerance = 1e-9;

    public static TheoryData<string, bool, bool> Architectures() => new()
    {
        { "qwen3", false, false },
        { "qwen3", true, false },
        { "qwen3", false, true },
        { "llama", false, false },
        { "llama", true, false },
        { "llama", false, true },
        { "qwen2", false, false },
        { "qwen2", true, false },
    };

    [Theory]
    [MemberData(nameof(Architectures))]
    public void TorchForwardMatchesScalarDoubleDecoder(string modelType, bool tied, bool attentionBias)
    {
        using var folder = new ScratchFolder();
        var config = TinyModels.Config(modelType, tied, attentionBias);
        ReferenceCheckpointWriter.WriteRandom(folder.Path, config, seed: 11, projectionStd: StrongStd);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path, ScalarType.Float64);
        var scalar = new ScalarDecoder(checkpoint);
        var tokens = TinyModels.Tokens(5, seed: 3);

        float[][] gateSets = [[1f, 1f], [0f, 0f], [0.5f, 0.5f], [1f, 0f], [0f, 0.5f]];
        foreach (var gates in gateSets)
        {
            using var logits = TorchReferenceDecoder.Forward(checkpoint, tokens, gates, ScalarType.Float64);
            Assert.Equal([5L, 50L], logits.shape);
            AssertClose(scalar.Forward(tokens, gates), logits, OracleTolerance, $"{modelType} tied={tied} gates=[{string.Join(", ", gates)}]");
        }

        // Gate 1 everywhere must be the plain transformers layer stack, written without any gate arithmetic.
        using var ungated = TorchReferenceDecoder.Forward(checkpoint, tokens, [1f, 1f], ScalarType.Float64);
        AssertClose(scalar.Forward(tokens, [1f, 1f], ungated: true), ungated, OracleTolerance, "ungated");
    }

    [Theory]
    [InlineData("qwen3")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void LayersAndGatesChangeTheLogits(string modelType)
    {
        // Guards the oracle test against passing vacuously: each gate setting must give visibly different logits.
        using var folder = new ScratchFolder();
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config(modelType, tied: false), seed: 5, projectionStd: StrongStd);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path, ScalarType.Float64);
        var tokens = TinyModels.Tokens(5, seed: 9);
        using var full = TorchReferenceDecoder.Forward(checkpoint, tokens, [1f, 1f], ScalarType.Float64);
        using var half = TorchReferenceDecoder.Forward(checkpoint, tokens, [0.5f, 0.5f], ScalarType.Float64);
        using var none = TorchReferenceDecoder.Forward(checkpoint, tokens, [0f, 0f], ScalarType.Float64);
        Assert.True(MaxAbsDiff(full, half) > 1e-2, "gate 0.5 should differ from gate 1");
        Assert.True(MaxAbsDiff(half, none) > 1e-2, "gate 0.5 should differ from gate 0");
    }

    [Theory]
    [InlineData("qwen3", true)]
    [InlineData("llama", false)]
    [InlineData("qwen2", false)]
    public void GateZeroEverywhereIsHeadOfNormedEmbedding(string modelType, bool tied)
    {
        using var folder = new ScratchFolder();
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config(modelType, tied), seed: 21, projectionStd: StrongStd);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path, ScalarType.Float64);
        var tokens = TinyModels.Tokens(5, seed: 4);
        var scalar = new ScalarDecoder(checkpoint);
        using var logits = TorchReferenceDecoder.Forward(checkpoint, tokens, [0f, 0f], ScalarType.Float64);
        // One norm and one dot product of length hidden: a few ulps of O(1) values, hence 1e-12.
        AssertClose(scalar.Logits(scalar.Embed(tokens)), logits, 1e-12, "gate 0");
    }

    [Fact]
    public void GateOneEverywhereIsBitIdenticalToNoGates()
    {
        using var folder = new ScratchFolder();
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config("qwen3", tied: false), seed: 2);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path);
        var tokens = TinyModels.Tokens(6, seed: 1);
        using var gated = TorchReferenceDecoder.Forward(checkpoint, tokens, [1f, 1f]);
        using var plain = TorchReferenceDecoder.Forward(checkpoint, tokens);
        using var same = gated.eq(plain).all();
        Assert.True(same.item<bool>(), "gates of one must not perturb a single bit of the transformers forward");
    }

    [Theory]
    [InlineData("qwen3")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void BatchRowsMatchSingleSequences(string modelType)
    {
        using var folder = new ScratchFolder();
        // Default (std 0.02) weights as the parity models use, so logits are O(0.1) and 1e-6 is several float32 ulps.
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config(modelType, tied: false), seed: 8);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path);
        var batch = new long[3, 6];
        var rows = Enumerable.Range(0, 3).Select(b => TinyModels.Tokens(6, seed: 100 + b)).ToArray();
        for (int b = 0; b < 3; b++)
        {
            for (int t = 0; t < 6; t++)
            {
                batch[b, t] = rows[b][t];
            }
        }

        using var batched = TorchReferenceDecoder.Forward(checkpoint, batch, [1f, 0.5f]);
        Assert.Equal([3L, 6L, 50L], batched.shape);
        for (int b = 0; b < 3; b++)
        {
            using var alone = TorchReferenceDecoder.Forward(checkpoint, rows[b], [1f, 0.5f]);
            using var row = batched[b];
            // Only GEMM blocking differs between batch sizes: float32 reassociation, a few ulps of O(0.1) logits.
            Assert.True(MaxAbsDiff(row, alone) <= 1e-6, $"{modelType} row {b}: {MaxAbsDiff(row, alone)}");
            // Rows must really be different sequences, or a batch that repeated row 0 would pass.
            using var other = batched[(b + 1) % 3];
            Assert.True(MaxAbsDiff(other, alone) > 1e-4, $"{modelType} row {b} is indistinguishable from row {(b + 1) % 3}");
        }
    }

    [Theory]
    [InlineData("qwen3")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Float32AndBFloat16TrackTheFloat64Oracle(string modelType)
    {
        using var folder = new ScratchFolder();
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config(modelType, tied: false), seed: 13, projectionStd: StrongStd);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path);
        var tokens = TinyModels.Tokens(7, seed: 6);
        float[] gates = [1f, 0.5f];
        using var exact = TorchReferenceDecoder.Forward(checkpoint, tokens, gates, ScalarType.Float64);
        using var single = TorchReferenceDecoder.Forward(checkpoint, tokens, gates, ScalarType.Float32);
        using var brain = TorchReferenceDecoder.Forward(checkpoint, tokens, gates, ScalarType.BFloat16);
        double scale = exact.abs().max().item<double>();
        // float32: unit roundoff 6e-8 over dot products of length <= 40 and two layers gives ~1e-6 relative; 1e-5 is 10x that.
        Assert.True(MaxAbsDiff(single, exact) <= 1e-5 * scale, $"float32 vs float64: {MaxAbsDiff(single, exact)} (scale {scale})");
        // bfloat16: unit roundoff 3.9e-3, every activation and weight rounded, ~10 roundings in series: ~4e-2 relative.
        // 0.1·scale bounds that while a formula error (e.g. a skipped norm or wrong RoPE) moves logits by O(scale).
        Assert.True(MaxAbsDiff(brain, exact) <= 0.1 * scale, $"bfloat16 vs float64: {MaxAbsDiff(brain, exact)} (scale {scale})");
        Assert.Equal(ScalarType.BFloat16, brain.dtype);
    }

    [Fact]
    public void ForwardLeavesNoLiveTensors()
    {
        using var folder = new ScratchFolder();
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config("qwen3", tied: false), seed: 3);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path);
        var tokens = TinyModels.Tokens(5, seed: 2);
        // The first call may create lazily cached tensors inside TorchSharp; count from the second.
        TorchReferenceDecoder.Forward(checkpoint, tokens).Dispose();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        TorchReferenceDecoder.Forward(checkpoint, tokens, [1f, 0.5f], ScalarType.Float64).Dispose();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void BadArgumentsAreRejectedWithTheValue()
    {
        using var folder = new ScratchFolder();
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config("llama", tied: true), seed: 3);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path);
        var tooMany = Assert.Throws<ArgumentException>(() => TorchReferenceDecoder.Forward(checkpoint, [1L, 2L], [1f, 1f, 1f]));
        Assert.Contains("3 values", tooMany.Message);
        var outside = Assert.Throws<ArgumentException>(() => TorchReferenceDecoder.Forward(checkpoint, [1L, 50L]));
        Assert.Contains("tokens[0, 1] is 50", outside.Message);
        var nan = Assert.Throws<ArgumentException>(() => TorchReferenceDecoder.Forward(checkpoint, [1L], [1f, float.NaN]));
        Assert.Contains("gates[1]", nan.Message);
        Assert.Throws<ArgumentException>(() => TorchReferenceDecoder.Forward(checkpoint, Array.Empty<long>()));
        Assert.Throws<ArgumentException>(() => TorchReferenceDecoder.Forward(checkpoint, [1L], dtype: ScalarType.Int32));
    }

    private static double MaxAbsDiff(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        return (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();
    }

    private static void AssertClose(double[][] expected, Tensor actual, double tolerance, string what)
    {
        var values = actual.to(ScalarType.Float64).data<double>().ToArray();
        int width = expected[0].Length;
        Assert.Equal(expected.Length * width, values.Length);
        double worst = 0;
        for (int t = 0; t < expected.Length; t++)
        {
            for (int v = 0; v < width; v++)
            {
                worst = Math.Max(worst, Math.Abs(expected[t][v] - values[t * width + v]));
            }
        }

        Assert.True(worst <= tolerance, $"{what}: max |scalar - torch| = {worst:E3} > {tolerance:E1}");
    }
}
