using E3.Interop.Emulator;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using Xunit;
using Xunit.Abstractions;

namespace E3.Tests.Attention;

/// <summary>
/// kernels/attention.cu through <see cref="AttentionKernels"/> on the CPU emulator, against a double-precision
/// enumeration of the same causal GQA attention (<see cref="AttentionReference"/>).
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class AttentionEmulatorTests(EmuFixture fixture, ITestOutputHelper output)
{
    private readonly EmuDevice emulator = fixture.Device;

    // u = 2^-24 is fp32's unit roundoff. Errors of the kernel's fp32 math, as a multiple of the reference:
    //  - each score carries at most D*u*scale*sum|q_i k_i| (the dot product bound), and the softmax turns an
    //    absolute score error e into a relative weight error of about 2e (the row max and the sum both move);
    //  - expf, the online rescaling (one exp per tile, at most 10 tiles here) and the sums over <= 300 keys add
    //    a few dozen u of relative error to each weight;
    //  - the output is a convex combination of v rows, so relative weight errors become absolute output errors
    //    of at most that much times max|v|.
    // 1e-5 * max|v| is ~170 u, several times the sum of the second group; the first is added per row.
    private const double Fp32Relative = 1e-5;

    // bf16 storage: the fp32 result is rounded to nearest once, a relative error of at most 2^-8 (8 significant bits).
    private const double Bf16Rounding = 1.0 / 256;

    // The tensor-core prefill also rounds each probability to bf16 before P·V (relative 2^-9, round to nearest), which
    // moves the output, a convex combination of v rows, by at most 2^-9 · max|v| more.
    private const double ProbabilityRounding = 1.0 / 512;

    public static TheoryData<AttentionCase> Cases() =>
    [
        // fp32 prefill: MHA, GQA 2:1 and 4:1 (MQA), head dims 16/64/128, T = 7/33/64, empty and filled caches.
        new(1, 4, 4, 16, 7, 0, false),
        new(2, 4, 2, 64, 33, 5, false),
        new(1, 4, 1, 128, 64, 0, false),
        new(2, 4, 4, 16, 64, 9, false),
        new(1, 4, 2, 64, 7, 20, false),
        new(2, 4, 1, 128, 33, 0, false),
        // fp32 decode (T = 1): a one-key cache, GQA over a filled cache, a group of 20 heads (two row chunks).
        new(2, 4, 1, 64, 1, 0, false),
        new(1, 4, 2, 128, 1, 40, false),
        new(2, 4, 4, 16, 1, 70, false),
        new(1, 20, 1, 16, 1, 45, false),
        // D = 256 needs more than 48 KiB of shared memory per block (an opt-in on a GPU), and odd sizes.
        new(1, 4, 2, 256, 7, 2, false),
        new(1, 4, 2, 256, 1, 33, false),
        new(1, 2, 1, 50, 9, 3, false),
        // bf16 storage.
        new(2, 4, 2, 128, 33, 3, true),
        new(1, 4, 4, 16, 64, 0, true),
        new(2, 4, 2, 64, 7, 0, true),
        new(1, 4, 1, 64, 1, 50, true),
        new(2, 4, 2, 128, 1, 0, true),
        // bf16, head dim 128: the tensor-core prefill. Several 64-row blocks and 64-key tiles, a partial last block, a
        // filled cache (keys before the block's rows), GQA and MQA.
        new(2, 4, 2, 128, 130, 37, true),
        new(1, 4, 1, 128, 65, 0, true),
        new(1, 2, 2, 128, 2, 70, true),
    ];

    static bool TensorCorePrefill(AttentionCase c) => c.Bf16 && c.HeadDim == 128 && c.Tokens > 1;

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesDoublePrecisionReference(AttentionCase shape)
    {
        var problem = new AttentionProblem(shape, seed: shape.Seed);
        var expected = new AttentionReference(problem);
        var got = EmuAttentionRun.Forward(emulator, problem);

        Assert.Equal(shape.Tokens == 1
            ? ["e3_kv_append", "e3_attention_decode", "e3_attention_decode_combine"]
            : new[] { "e3_kv_append", TensorCorePrefill(shape) ? "e3_attention_prefill_mma" : "e3_attention_prefill" },
            got.Launches.Select(l => l.EntryPoint[..l.EntryPoint.LastIndexOf('_')]));
        AssertCachesUpdated(expected, got);
        double worst = AssertOutputsClose(problem, expected, got);
        double worstStat = AssertStatsClose(problem, expected, got);
        output.WriteLine($"{shape}: max |error| / bound = {worst:F3} (output), {worstStat:F3} (stats)");
    }

    [Fact]
    public void TheTensorCorePrefillAndThePortableOneAgree()
    {
        // The same bf16 problem through both kernels: each within its bound of the double reference, and the two within
        // the sum of those bounds of each other (they round the probabilities differently, so not bit for bit).
        var shape = new AttentionCase(2, 4, 2, 128, 100, 29, true);
        var problem = new AttentionProblem(shape, seed: 128);
        var expected = new AttentionReference(problem);
        var mma = EmuAttentionRun.Forward(emulator, problem, tensorCores: true);
        var portable = EmuAttentionRun.Forward(emulator, problem, tensorCores: false);
        Assert.Equal("e3_attention_prefill_mma_bf16", mma.Launches[1].EntryPoint);
        Assert.Equal("e3_attention_prefill_bf16", portable.Launches[1].EntryPoint);
        Assert.Equal(new Interop.Gpu.Dim3(2, 4, 2), mma.Launches[1].Shape.Grid); // ceil(100 / 64) row blocks
        AssertOutputsClose(problem, expected, mma);
        AssertStatsClose(problem, expected, mma);
        AssertOutputsClose(problem, expected, portable, tensorCores: false);
        Assert.NotEqual(portable.Output, mma.Output); // the two kernels really differ in their rounding
    }

    [Fact]
    public void DecodeSplitsALongCacheOverSeveralBlocks()
    {
        // 300 keys, and with 8 SMs the wrapper aims at 32 blocks: 2 sequences * 2 kv heads leave 8 splits wanted, of
        // 38 keys, which the 64-key minimum turns into 5 splits.
        var problem = new AttentionProblem(new AttentionCase(2, 4, 2, 64, 1, 299, false), seed: 300);
        var expected = new AttentionReference(problem);
        var got = EmuAttentionRun.Forward(emulator, problem, multiprocessors: 8);

        var decode = got.Launches.Single(l => l.EntryPoint == "e3_attention_decode_f32");
        Assert.Equal(new Interop.Gpu.Dim3(5, 2, 2), decode.Shape.Grid);
        AssertOutputsClose(problem, expected, got);
        AssertStatsClose(problem, expected, got);
    }

    [Theory]
    [InlineData(32)]  // 10 splits, the last one partial (300 = 9 * 32 + 12)
    [InlineData(96)]  // 4 splits
    [InlineData(320)] // 1 split: the combine step must leave a single partial as it is
    public void DecodeCombineIsIndependentOfTheSplit(int keysPerSplit)
    {
        var shape = new AttentionCase(1, 4, 2, 64, 1, 299, false);
        var problem = new AttentionProblem(shape, seed: 301);
        var expected = new AttentionReference(problem);
        var layout = problem.Layout;
        // The caches already hold the new row: the decode kernels alone are under test.
        using var q = emulator.Upload<float>(problem.Q);
        using var kCache = emulator.Upload<float>(expected.KCache);
        using var vCache = emulator.Upload<float>(expected.VCache);
        int splits = (shape.Start + 1 + keysPerSplit - 1) / keysPerSplit;
        using var partialO = emulator.Allocate(shape.Heads * splits * shape.HeadDim * sizeof(float));
        using var partialMl = emulator.Allocate(shape.Heads * splits * 2 * sizeof(float));
        using var o = emulator.Allocate(problem.Q.Length * sizeof(float));
        using var stats = emulator.Allocate(shape.Heads * 2 * sizeof(float));
        var decodeShape = LaunchShapes.AttentionDecode(1, shape.Heads, shape.KvHeads, shape.HeadDim, shape.Start + 1, 1).Shape;
        emulator.Launch(emulator.GetFunction("attention", "e3_attention_decode_f32"), new Dim3((uint)splits, decodeShape.Grid.Y, 1),
            decodeShape.Block.X, decodeShape.DynamicSharedBytes, null,
            q, kCache, vCache, partialO, partialMl, shape.Start, layout.Capacity, shape.Heads, shape.KvHeads, shape.HeadDim, layout.Scale, keysPerSplit);
        emulator.Launch(emulator.GetFunction("attention", "e3_attention_decode_combine_f32"), new Dim3((uint)shape.Heads), 32, 0, null,
            partialO, partialMl, o, stats, shape.Heads, shape.HeadDim, splits);

        var got = new EmuAttentionResult(o.Download<float>(problem.Q.Length), stats.Download<float>(shape.Heads * 2), [], [], [], []);
        AssertOutputsClose(problem, expected, got);
        AssertStatsClose(problem, expected, got);
    }

    [Fact]
    public void HeadDimAbove128OptsIntoMoreSharedMemoryOnce()
    {
        var problem = new AttentionProblem(new AttentionCase(1, 2, 1, 256, 5, 0, false), seed: 256);
        var got = EmuAttentionRun.Forward(emulator, problem);
        // 16*256 + 32*257 + 32*256 floats.
        Assert.Equal([("e3_attention_prefill_f32", 82_048)], got.SharedOptIns);
        Assert.Equal(82_048u, got.Launches.Single(l => l.EntryPoint == "e3_attention_prefill_f32").Shape.DynamicSharedBytes);
    }

    [Fact]
    public void HeadDimBeyondTheDevicesSharedMemoryIsRefusedBeforeAnyLaunch()
    {
        // A device granting 64 KiB per block cannot run D = 256 (82,048 bytes); D = 128 needs no opt-in at all.
        var device = new EmuLaunchDevice(emulator, multiprocessors: 8, sharedOptInLimit: 64 << 10);
        using var kernels = new AttentionKernels(device);
        var layout = new AttentionLayout(1, 4, 0, 4, 2, 1, 256, 0.0625f);
        var cache = new Interop.Gpu.DevicePointer<float>(0x1000); // never dereferenced: nothing may launch
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
            kernels.Forward(cache, cache, cache, cache, cache, cache, default, default, layout, default));
        Assert.Equal("HeadDim", error.ParamName);
        Assert.Contains("needs 82048 bytes of shared memory per block; emulator allows 65536", error.Message);
        Assert.Empty(device.Launches);
        Assert.Empty(device.SharedOptIns);
    }

    private static void AssertCachesUpdated(AttentionReference expected, EmuAttentionResult got)
    {
        // Bit-exact: the append is a copy, earlier positions must be untouched and the NaN spares stay NaN.
        Assert.Equal(expected.KCache.Select(BitConverter.SingleToInt32Bits), got.KCache.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(expected.VCache.Select(BitConverter.SingleToInt32Bits), got.VCache.Select(BitConverter.SingleToInt32Bits));
    }

    // Returns the largest error as a fraction of its bound, for the log.
    private static double AssertOutputsClose(AttentionProblem problem, AttentionReference expected, EmuAttentionResult got, bool tensorCores = true)
    {
        var c = problem.Case;
        double probabilities = tensorCores && TensorCorePrefill(c) ? ProbabilityRounding : 0;
        double worst = 0;
        for (int i = 0; i < expected.Output.Length; i++)
        {
            int item = i / c.HeadDim; // (row, head)
            double reference = expected.Output[i];
            double fp32 = (Fp32Relative + 2 * c.HeadDim * Math.Pow(2, -24) * expected.DotMagnitude[item]) * expected.ValueScale[item];
            double bound = c.Bf16 ? Bf16Rounding * (Math.Abs(reference) + fp32) + fp32 + probabilities * expected.ValueScale[item] : fp32;
            double error = Math.Abs(got.Output[i] - reference);
            Assert.True(error <= bound, $"{c}: output[{i}] (row {item / c.Heads}, head {item % c.Heads}) = {got.Output[i]}, expected {reference}, error {error:E2} > {bound:E2}");
            worst = Math.Max(worst, error / bound);
        }
        return worst;
    }

    private static double AssertStatsClose(AttentionProblem problem, AttentionReference expected, EmuAttentionResult got)
    {
        var c = problem.Case;
        double worst = 0;
        for (int item = 0; item < expected.Max.Length; item++)
        {
            // The max inherits one score's rounding; the log-sum-exp adds the sum's and logf's few ulp.
            double scoreError = c.HeadDim * Math.Pow(2, -24) * expected.DotMagnitude[item];
            double maxBound = scoreError + 4 * Math.Pow(2, -24) * Math.Abs(expected.Max[item]);
            double lseBound = 2 * scoreError + Fp32Relative * (1 + Math.Abs(expected.LogSumExp[item]));
            double maxError = Math.Abs(got.Stats[2 * item] - expected.Max[item]);
            double lseError = Math.Abs(got.Stats[2 * item + 1] - expected.LogSumExp[item]);
            Assert.True(maxError <= maxBound, $"{c}: max of row {item / c.Heads}, head {item % c.Heads} = {got.Stats[2 * item]}, expected {expected.Max[item]}");
            Assert.True(lseError <= lseBound, $"{c}: log-sum-exp of row {item / c.Heads}, head {item % c.Heads} = {got.Stats[2 * item + 1]}, expected {expected.LogSumExp[item]}");
            worst = Math.Max(worst, Math.Max(maxError / maxBound, lseError / lseBound));
        }
        return worst;
    }
}
